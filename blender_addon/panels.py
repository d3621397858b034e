"""The sidebar panel: View3D › Sidebar › gen4d."""

from __future__ import annotations

import os
import time

import bpy

from . import panel_state, session
from .importer import MODIFIER_NAME
from .importer.nodes import (FRAME_INPUT, OPACITY_THRESHOLD_INPUT, RETIME_INPUT, SIZE_INPUT, VIEWPORT_FRACTION_INPUT,
                             input_identifier)
from .preferences import get_prefs


def _eta(seconds) -> str:
    if seconds is None:
        return ""
    seconds = int(max(0, seconds))
    return f"ETA {seconds // 60}:{seconds % 60:02d}"


_previews = None


def _preview_icon(path: str) -> int:
    """Icon id of the latest preview PNG (a ``bpy.utils.previews`` collection), 0 if none."""
    global _previews
    if not path:
        return 0
    try:
        import bpy.utils.previews

        if _previews is None:
            _previews = bpy.utils.previews.new()
        if path not in _previews:
            _previews.clear()
            _previews.load(path, path, "IMAGE")
        return _previews[path].icon_id
    except Exception:  # a preview must never break the panel
        return 0


def free_previews() -> None:
    """Release the preview collection (on unregister)."""
    global _previews
    if _previews is not None:
        import bpy.utils.previews

        bpy.utils.previews.remove(_previews)
        _previews = None


def _draw_asset(layout, obj) -> None:
    """The active gen4d asset's player inputs: Frame (driven or keyable), Retime, Splat Size."""
    mod = obj.modifiers.get(MODIFIER_NAME) if obj is not None else None
    if mod is None or mod.node_group is None:
        return
    box = layout.box()
    box.label(text=obj.name, icon="OUTLINER_OB_POINTCLOUD")
    for name in (FRAME_INPUT, RETIME_INPUT, SIZE_INPUT, OPACITY_THRESHOLD_INPUT, VIEWPORT_FRACTION_INPUT):
        try:
            ident = input_identifier(mod.node_group, name)
        except KeyError:  # an asset imported by an older version
            continue
        box.prop(mod, f'["{ident}"]', text=name)


def _reachability(s) -> str:
    """``not connected`` / ``reachable (N ms)`` / ``unreachable (last answer N s ago)``."""
    if s.reachable is None:
        return "not connected"
    if s.reachable:
        return "reachable" + (f" ({s.rtt_s * 1000:.0f} ms)" if s.rtt_s is not None else "")
    if s.last_ok is None:
        return "unreachable"
    return f"unreachable (last answer {time.monotonic() - s.last_ok:.0f} s ago)"


def _draw_local_backend(box) -> None:
    """Start / Stop / Log of a backend started from Blender, with its pid or exit code."""
    from . import local_backend

    status = local_backend.status()
    row = box.row(align=True)
    if status.startswith(("running", "starting")):
        row.label(text=f"local backend {status}", icon="CONSOLE")
        row.operator("gen4d.stop_local_backend", text="", icon="PAUSE")
    else:
        if status:
            row.label(text=f"local backend {status}", icon="ERROR")
        row.operator("gen4d.start_local_backend", icon="PLAY")
    if status:
        row.operator("gen4d.show_backend_log", text="", icon="TEXT")


#: Job-list rows shown in the panel (the file keeps more).
JOB_ROWS = 8


def _draw_jobs(layout, s) -> None:
    """The persistent job list: status per job, Reattach / Import / Forget per row."""
    records = session.JOBS.records()
    box = layout.box()
    header = box.row()
    header.label(text=f"Jobs ({len(records)})", icon="PRESET")
    header.operator("gen4d.reattach", text="Reattach by ID…", icon="LINKED").job_id = ""
    for record in records[:JOB_ROWS]:
        row = box.row(align=True)
        active = record["job_id"] == s.job_id
        label = f"{record['job_id'][:8]} · {record['job_type'] or 'job'} · {record['status']}"
        if record["name"]:
            label += f" · {record['name'][:24]}"
        row.label(text=label, icon="RADIOBUT_ON" if active else "RADIOBUT_OFF")
        if record["result_dir"] and os.path.isdir(record["result_dir"]):
            row.operator("gen4d.import_result", text="", icon="IMPORT").directory = record["result_dir"]
        elif not active:
            row.operator("gen4d.reattach", text="", icon="FILE_REFRESH").job_id = record["job_id"]
        row.operator("gen4d.forget_job", text="", icon="X").job_id = record["job_id"]


class GEN4D_PT_main(bpy.types.Panel):
    """Submit footage, follow the job, import the result."""
    bl_idname = "GEN4D_PT_main"
    bl_label = "gen4d"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "gen4d"

    def draw(self, context):
        layout, s = self.layout, panel_state.STATE
        prefs = get_prefs(context)
        box = layout.box()
        if prefs is not None:
            box.prop(prefs, "address", text="Backend")
            if not prefs.key_text:
                box.prop(prefs, "key_file", text="Key File")
        row = box.row()
        row.label(text=_reachability(s), icon="CHECKMARK" if s.reachable else "ERROR" if s.reachable is False
                  else "BLANK1")
        row.operator("gen4d.connect", text="", icon="FILE_REFRESH")
        if s.reachable is False and s.unreachable_reason:
            box.label(text=s.unreachable_reason[:120])
        _draw_local_backend(box)

        settings = context.scene.gen4d
        layout.prop(settings, "preset")
        layout.prop(settings, "asset_name")
        adv = layout.box()
        adv.prop(settings, "show_advanced", icon="TRIA_DOWN" if settings.show_advanced else "TRIA_RIGHT",
                 emboss=False)
        if settings.show_advanced:
            for name in ("iterations", "max_image_size", "representation", "densify_strategy",
                         "confidence_weighting"):
                adv.prop(settings, name)
        busy = s.busy
        col = layout.column(align=True)
        col.enabled = not busy
        col.prop(settings, "prompt", text="", icon="TEXT")
        col.operator("gen4d.submit_prompt", icon="PLAY")
        row = col.row(align=True)
        row.operator("gen4d.submit_image", icon="IMAGE_DATA")
        row.operator("gen4d.submit_video", icon="FILE_MOVIE")
        col.operator("gen4d.submit_orbital_video", icon="ORIENTATION_GIMBAL")
        col.operator("gen4d.submit_footage", icon="FILE_FOLDER")
        col.operator("gen4d.capture_selected", icon="RENDER_ANIMATION")

        if s.status != "idle":
            col = layout.column()
            text = f"{s.status}" + (f" · {s.stage}" if s.stage else "") + \
                (f" · on {s.node}" if s.node and s.status == "running" else "")
            eta = _eta(s.eta_s) if s.status == "running" else ""
            col.progress(factor=s.progress, type="BAR", text=f"{text} {eta}".strip())
            if s.message:
                col.label(text=s.message)
            icon = _preview_icon(s.preview_path)
            if icon:
                col.template_icon(icon_value=icon, scale=6.0)
            if busy and s.job_id:
                col.operator("gen4d.cancel", icon="CANCEL")
        row = layout.row()
        row.operator("gen4d.import_result", icon="IMPORT",
                     text="Import" if s.status == "ready" else "Import Result Folder…")
        row = layout.row(align=True)
        row.operator("gen4d.prepare_scene", icon="SCENE_DATA")
        row.operator("gen4d.set_cycles_bounces", text="", icon="RENDER_STILL")
        _draw_jobs(layout, s)
        _draw_asset(layout, context.active_object)
        if s.last_error:
            err = layout.box()
            err.alert = True
            err.label(text=s.last_error[:200], icon="ERROR")


classes = (GEN4D_PT_main,)
