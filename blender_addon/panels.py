"""The sidebar panel: View3D › Sidebar › gen4d."""

from __future__ import annotations

import bpy

from . import state
from .importer import MODIFIER_NAME
from .importer.nodes import FRAME_INPUT, RETIME_INPUT, SIZE_INPUT, input_identifier
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
    for name in (FRAME_INPUT, RETIME_INPUT, SIZE_INPUT):
        try:
            ident = input_identifier(mod.node_group, name)
        except KeyError:  # an asset imported by an older version
            continue
        box.prop(mod, f'["{ident}"]', text=name)


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
        adv = layout.box()
        adv.prop(settings, "show_advanced", icon="TRIA_DOWN" if settings.show_advanced else "TRIA_RIGHT",
                 emboss=False)
        if settings.show_advanced:
            for name in ("iterations", "max_image_size", "representation", "densify_strategy",
                         "confidence_weighting"):
                adv.prop(settings, name)
        busy = s.status in ("capturing", "submitting", "queued", "running", "fetching")
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
            text = f"{s.status}" + (f" · {s.stage}" if s.stage else "")
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
        layout.operator("gen4d.set_cycles_bounces", icon="RENDER_STILL")
        _draw_asset(layout, context.active_object)
        if s.last_error:
            err = layout.box()
            err.alert = True
            err.label(text=s.last_error[:200], icon="ERROR")


classes = (GEN4D_PT_main,)
