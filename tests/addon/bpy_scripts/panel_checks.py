"""Run in a fresh process: draw the gen4d panel with a recording layout in each job state
and print what it drew as ``RESULT: {json}`` (tests/addon/test_addon_panel.py asserts)."""

import json
import sys
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))
import bpy  # noqa: E402

import blender_addon  # noqa: E402
from blender_addon import panels, state  # noqa: E402
from blender_addon.importer import import_result  # noqa: E402
from samples.synthetic_result import write_result  # noqa: E402


class RecordingLayout:
    """Stands in for ``bpy.types.UILayout``: every call is appended to one shared log as
    ``[kind, detail, enabled, alert]``, where enabled / alert are those of the
    innermost layout (and its parents) at draw time."""

    def __init__(self, log, parent=None):
        self.log, self.parent = log, parent
        self.enabled, self.alert = True, False

    def _flags(self):
        enabled, alert, node = True, False, self
        while node is not None:
            enabled, alert = enabled and node.enabled, alert or node.alert
            node = node.parent
        return enabled, alert

    def _record(self, kind, detail):
        self.log.append([kind, detail, *self._flags()])

    def _child(self, kind):
        self._record(kind, "")
        return RecordingLayout(self.log, self)

    def box(self):
        return self._child("box")

    def row(self, **_):
        return self._child("row")

    def column(self, **_):
        return self._child("column")

    def label(self, text="", **_):
        self._record("label", text)

    def prop(self, data, name, text=None, **_):
        self._record("prop", text if text is not None else name)

    def operator(self, idname, text=None, **_):
        self._record("operator", f"{idname}|{text or ''}")
        return types.SimpleNamespace()

    def progress(self, factor=0.0, type="BAR", text=""):
        self._record("progress", f"{factor:.2f}|{text}")

    def template_icon(self, icon_value=0, scale=1.0):
        self._record("icon", str(icon_value))

    def separator(self, **_):
        pass


def draw(label):
    log = []
    panel = types.SimpleNamespace(layout=RecordingLayout(log))
    panels.GEN4D_PT_main.draw(panel, bpy.context)
    res[label] = log


work = Path(sys.argv[1])
res = {}
blender_addon.register()
try:
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj)

    state.STATE = state.JobState()
    draw("idle")

    state.STATE = state.JobState(reachable=True, rtt_s=0.004, job_id="j1", status="running", stage="reconstruct",
                                 progress=0.4, eta_s=75, message="step 400/1000 · loss 0.0412")
    draw("running")

    state.STATE = state.JobState(reachable=True, job_id="j1", status="ready", stage="export", progress=1.0,
                                 result_dir=str(work))
    draw("ready")

    state.STATE = state.JobState(reachable=False, job_id="j2", status="failed",
                                 last_error="model_missing: stabilityai/sd-turbo is not downloaded")
    draw("failed")

    write_result(work / "result", n=20, frames=3)
    obj = import_result(work / "result", name="asset", cache_dir=work / "cache")
    bpy.context.view_layer.objects.active = obj
    state.STATE = state.JobState()
    draw("asset_active")
finally:
    blender_addon.unregister()
print("RESULT: " + json.dumps(res))
