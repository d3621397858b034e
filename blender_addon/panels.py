"""The sidebar panel: View3D › Sidebar › gen4d."""

from __future__ import annotations

import bpy

from . import state
from .preferences import get_prefs


def _eta(seconds) -> str:
    if seconds is None:
        return ""
    seconds = int(max(0, seconds))
    return f"ETA {seconds // 60}:{seconds % 60:02d}"


class GEN4D_PT_main(bpy.types.Panel):
    """Submit footage, follow the job, import the result."""
    bl_idname = "GEN4D_PT_main"
    bl_label = "gen4d"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "gen4d"

    def draw(self, context):
        layout, s = self.layout, state.STATE
        prefs = get_prefs(context)
        box = layout.box()
        if prefs is not None:
            box.prop(prefs, "address", text="Backend")
            if not prefs.key_text:
                box.prop(prefs, "key_file", text="Key File")
        row = box.row()
        reach = {None: "not connected", True: "reachable", False: "unreachable"}[s.reachable]
        if s.reachable and s.rtt_s is not None:
            reach += f" ({s.rtt_s * 1000:.0f} ms)"
        row.label(text=reach, icon="CHECKMARK" if s.reachable else "ERROR" if s.reachable is False else "BLANK1")
        row.operator("gen4d.connect", text="", icon="FILE_REFRESH")

        settings = context.scene.gen4d
        layout.prop(settings, "preset")
        layout.prop(settings, "asset_name")
        busy = s.status in ("submitting", "queued", "running", "fetching")
        row = layout.row()
        row.enabled = not busy
        row.operator("gen4d.submit_footage", icon="FILE_FOLDER")

        if s.status != "idle":
            col = layout.column()
            text = f"{s.status}" + (f" · {s.stage}" if s.stage else "")
            eta = _eta(s.eta_s) if s.status == "running" else ""
            col.progress(factor=s.progress, type="BAR", text=f"{text} {eta}".strip())
            if s.message:
                col.label(text=s.message)
            if busy and s.job_id:
                col.operator("gen4d.cancel", icon="CANCEL")
        row = layout.row()
        row.operator("gen4d.import_result", icon="IMPORT",
                     text="Import" if s.status == "ready" else "Import Result Folder…")
        layout.operator("gen4d.set_cycles_bounces", icon="RENDER_STILL")
        if s.last_error:
            err = layout.box()
            err.alert = True
            err.label(text=s.last_error[:200], icon="ERROR")


classes = (GEN4D_PT_main,)
