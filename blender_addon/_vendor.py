"""Find the ``protocol`` package: the copy bundled into the extension first, else the
repository's own package (development checkouts, tests).

Imported lazily (see :func:`get_protocol`) so that the importer and the UI load even when
pyzmq is missing; the error then surfaces as a report when the user connects.
"""

from __future__ import annotations

import importlib


def get_protocol():
    """Return the ``protocol`` module.

    Raises:
        ImportError: neither a bundled nor an installed ``protocol`` (or pyzmq) is importable.
    """
    try:
        from . import protocol  # bundled by build_addon.py
    except ImportError:
        import protocol  # repository checkout
    return protocol


def protocol_module(name: str):
    """``protocol.<name>`` (e.g. ``"config"``, ``"presets"``) from the same package
    :func:`get_protocol` finds.

    Raises:
        ImportError: as :func:`get_protocol`, or no such submodule.
    """
    return importlib.import_module(f"{get_protocol().__name__}.{name}")
