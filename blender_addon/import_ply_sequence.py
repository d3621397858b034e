"""File › Import › 4D Gaussian PLY Sequence: per-frame 3DGS PLY files from any tool
(numbered ``*_0000.ply``, ``*_0001.ply`` …, the same Gaussians in every frame) become one
animated Geometry Nodes object, exactly like a gen4d result (:mod:`.importer`)."""

from __future__ import annotations

import bpy
from bpy_extras.io_utils import ImportHelper


class GEN4D_OT_import_ply_sequence(bpy.types.Operator, ImportHelper):
    """Import a numbered per-frame 3D Gaussian Splatting PLY sequence as one animated object"""
    bl_idname = "gen4d.import_ply_sequence"
    bl_label = "Import 4D Gaussian PLY Sequence"
    bl_options = {"REGISTER", "UNDO"}

    filename_ext = ".ply"
    filter_glob: bpy.props.StringProperty(default="*.ply", options={"HIDDEN"})
    fps: bpy.props.FloatProperty(name="Frame Rate", default=24.0, min=0.01, max=1000.0,
                                 description="Frames per second of the sequence (recorded on the object)")

    def execute(self, context):
        from pathlib import Path

        from .importer import import_ply_sequence

        path = Path(bpy.path.abspath(self.filepath))
        name = path.stem.rstrip("0123456789_-. ") or "gaussian_sequence"
        try:
            obj = import_ply_sequence(path, name=name, fps=self.fps)
        except Exception as exc:  # reported Blender's way, never a traceback
            self.report({"ERROR"}, f"gen4d: cannot import {path.name}: {exc}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"gen4d: imported {obj.name} ({obj['gen4d_frame_count']} frames)")
        return {"FINISHED"}


def menu_func(self, context):
    """File › Import entry."""
    self.layout.operator(GEN4D_OT_import_ply_sequence.bl_idname, text="4D Gaussian PLY Sequence (.ply)")


def register_menu() -> None:
    """Add the File › Import entry."""
    bpy.types.TOPBAR_MT_file_import.append(menu_func)


def unregister_menu() -> None:
    """Remove the File › Import entry."""
    bpy.types.TOPBAR_MT_file_import.remove(menu_func)


classes = (GEN4D_OT_import_ply_sequence,)
