"""gen4d Blender extension: submit footage to the gen4d backend, follow the job, and
import the animated 4D Gaussian result as one Geometry Nodes object.

``register``/``unregister`` add and remove the classes, ``Scene.gen4d``, the timer and
the backend connection (``session.py``). The importer (``importer.import_result``) works without
registration, from plain ``bpy``.
"""

from __future__ import annotations

import bpy

from . import capture, import_ply_sequence, operators, panels, preferences, session

_classes = (*preferences.classes, *operators.classes, *capture.classes, *import_ply_sequence.classes,
            *panels.classes)


def register():
    """Register classes and ``Scene.gen4d``."""
    for cls in _classes:
        bpy.utils.register_class(cls)
    bpy.types.Scene.gen4d = bpy.props.PointerProperty(type=preferences.GEN4D_SceneSettings)
    import_ply_sequence.register_menu()


def unregister():
    """Stop the backend connection and timer, then unregister everything."""
    session.shutdown()
    panels.free_previews()
    import_ply_sequence.unregister_menu()
    if hasattr(bpy.types.Scene, "gen4d"):
        del bpy.types.Scene.gen4d
    for cls in reversed(_classes):
        try:
            bpy.utils.unregister_class(cls)
        except RuntimeError:
            pass
