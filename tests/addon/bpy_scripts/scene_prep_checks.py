"""Run in a fresh process: snapshot every scene setting, import a result (must change none),
run "Prepare Scene for Splats" (must change exactly what it reports, all of them listed in
``scene_prep.RECOMMENDED``), run it again (nothing left to change). Prints ``RESULT: {json}``
(tests/addon/test_addon_scene_prep.py asserts)."""

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))
import bpy  # noqa: E402

import blender_addon  # noqa: E402
from blender_addon import operators, scene_prep  # noqa: E402
from blender_addon.importer import import_result  # noqa: E402
from samples.synthetic_result import write_result  # noqa: E402


def snapshot(struct, prefix="", depth=0, out=None):
    """Every plain setting of ``struct`` and its nested non-ID structs (depth ≤ 3), as
    ``{"render.film_transparent": "True", ...}`` (values as text)."""
    out = {} if out is None else out
    for prop in struct.bl_rna.properties:
        key = prefix + prop.identifier
        if prop.identifier == "rna_type":
            continue
        if prop.type == "POINTER":
            value = getattr(struct, prop.identifier, None)
            if value is not None and not isinstance(value, bpy.types.ID) and depth < 3:
                snapshot(value, key + ".", depth + 1, out)
        elif prop.type != "COLLECTION":
            value = getattr(struct, prop.identifier, None)
            out[key] = str(tuple(value) if hasattr(value, "__len__") and not isinstance(value, str) else value)
    return out


def changed(before, after):
    return sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))


class Reporter:
    """Stands in for the operator's ``self``: collects ``report`` calls."""

    def __init__(self):
        self.reports = []

    def report(self, kind, text):
        self.reports.append([sorted(kind)[0], text])


work = Path(sys.argv[1])
bpy.ops.wm.read_factory_settings(use_empty=True)
blender_addon.register()
scene = bpy.context.scene
res = {"recommended": [p for p, _, _ in scene_prep.RECOMMENDED]}

before = snapshot(scene)
write_result(work / "result", n=50, frames=2)
import_result(work / "result", name="asset", cache_dir=work / "cache")
after_import = snapshot(scene)
res["import_changed"] = [k for k in changed(before, after_import) if not k.startswith("frame_current")]

fake = Reporter()
res["status"] = sorted(operators.GEN4D_OT_prepare_scene.execute(fake, bpy.context))
after_prepare = snapshot(scene)
res["prepare_changed"] = changed(after_import, after_prepare)
res["reports"] = fake.reports

again = Reporter()
operators.GEN4D_OT_prepare_scene.execute(again, bpy.context)
res["second_changed"] = changed(after_prepare, snapshot(scene))
res["second_reports"] = again.reports

# Through bpy.ops on a second, factory-default scene: the registered operator does the same.
scene2 = bpy.data.scenes.new("second")
fresh = snapshot(scene2)
with bpy.context.temp_override(scene=scene2):
    res["ops_status"] = sorted(bpy.ops.gen4d.prepare_scene())
res["ops_changed"] = changed(fresh, snapshot(scene2))
res["bl_options"] = sorted(operators.GEN4D_OT_prepare_scene.bl_options)
blender_addon.unregister()  # stops the add-on's timers/threads, so the process can exit
print("RESULT: " + json.dumps(res))
