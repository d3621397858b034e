"""Import the add-on's bpy-free modules (``futures``, ``connection``, ``job_list``,
``panel_state``) in the pytest process, where ``bpy`` must not be imported: they are loaded
as submodules of a stand-in package whose ``__init__`` (which imports ``bpy``) never runs,
so their relative imports work."""

import importlib
import sys
import types

from _run import REPO

PACKAGE = "gen4d_addon_nobpy"


def addon_module(name: str):
    """The module ``blender_addon/<name>.py``, imported as ``gen4d_addon_nobpy.<name>``.

    Raises:
        ImportError: the module (or something it imports) needs ``bpy`` or is missing.
    """
    if PACKAGE not in sys.modules:
        package = types.ModuleType(PACKAGE)
        package.__path__ = [str(REPO / "blender_addon")]
        sys.modules[PACKAGE] = package
    return importlib.import_module(f"{PACKAGE}.{name}")
