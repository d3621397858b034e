"""Run in a fresh process: the add-on's whole job flow through its operators against an
in-process backend (fake runner) in this process, counting the requests the server gets.
Prints ``RESULT: {json}`` (tests/addon/test_addon_session.py asserts).

argv: WORK_DIR. Set BLENDER_USER_RESOURCES (the job list lives there).
"""

import json
import socket
import sys
import threading
import time
from pathlib import Path

import bpy  # noqa: I001
import addon_utils

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))
from backend import server as server_mod  # noqa: E402
from backend.pipeline import runner  # noqa: E402

work = Path(sys.argv[1])
KEY = "0123456789abcdef0123456789abcdef"


def fake_run_job(spec, input_dir, out_dir, ctx):
    """Three progress steps, a preview and a one-frame result; prompt "slow": runs until cancelled."""
    if spec.get("prompt") == "slow":
        for i in range(600):
            ctx.check_cancelled()
            ctx.progress("reconstruct", i, 600, loss=0.25)
            time.sleep(0.05)
    for i in range(3):
        ctx.progress("reconstruct", i + 1, 3, loss=0.5)
        time.sleep(0.05)
    ctx.preview(b"\x89PNG fake preview")
    (out_dir / "frames").mkdir()
    (out_dir / "frames" / "frame_0000.ply").write_bytes(b"ply")
    manifest = Manifest(frame_count=1, frame_files=["frames/frame_0000.ply"])
    write_manifest(out_dir, manifest)
    return manifest.to_dict()


runner.run_job = fake_run_job
requests = []
for name in ("submit", "watch", "cancel", "fetch_result"):
    def counting(self, rid, req, bufs, _original=getattr(server_mod.Server, f"_on_{name}"), _name=name):
        requests.append(_name)
        return _original(self, rid, req, bufs)
    setattr(server_mod.Server, f"_on_{name}", counting)

with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
address = f"tcp://127.0.0.1:{port}"
stop = threading.Event()
server = threading.Thread(target=server_mod.serve, kwargs=dict(address=address, data_dir=work / "data",
                                                               key=KEY.encode(), stop_event=stop), daemon=True)
server.start()

bpy.ops.wm.read_factory_settings(use_empty=True)
addon_utils.enable("blender_addon", default_set=True)
from blender_addon import panel_state, session, timer  # noqa: E402
from protocol.formats.manifest import Manifest, write_manifest  # noqa: E402

prefs = bpy.context.preferences.addons["blender_addon"].preferences
prefs.address, prefs.key_text = address, KEY


def pump(until, timeout_s=30.0):
    """Call the timer callback (the bpy module runs no event loop) until ``until()``;
    return the statuses the panel went through."""
    seen = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        timer.tick()
        if panel_state.STATE.status not in seen[-1:]:
            seen.append(panel_state.STATE.status)
        if until():
            break
        time.sleep(0.02)
    return seen


res = {}
pump(lambda: panel_state.STATE.reachable is not None)  # no connection yet: nothing happens
res["reachable_before_connect"] = panel_state.STATE.reachable
res["connect"] = sorted(bpy.ops.gen4d.connect())
pump(lambda: panel_state.STATE.reachable is not None)
res["reachable"] = panel_state.STATE.reachable

bpy.context.scene.gen4d.prompt = "a dancing robot"
res["submit"] = sorted(bpy.ops.gen4d.submit_prompt())
res["status_right_after_submit"] = panel_state.STATE.status  # the operator never waits for the backend
res["seen"] = pump(lambda: panel_state.STATE.status in ("ready", "failed", "cancelled", "completed"))
state = panel_state.STATE
res["job_id"], res["status"], res["error"] = state.job_id, state.status, state.last_error
res["message"], res["progress"], res["stage"] = state.message, state.progress, state.stage
res["result_dir"] = state.result_dir
res["frame_on_disk"] = (Path(state.result_dir) / "frames" / "frame_0000.ply").is_file() if state.result_dir else False
res["preview"] = Path(state.preview_path).read_bytes().decode("latin-1") if state.preview_path else ""
res["record"] = dict(session.JOBS.find(state.job_id) or {})
res["requests_after_job"] = list(requests)

bpy.context.scene.gen4d.prompt = "slow"
bpy.ops.gen4d.submit_prompt()
pump(lambda: panel_state.STATE.status == "running")
res["cancel"] = sorted(bpy.ops.gen4d.cancel())
res["seen_cancel"] = pump(lambda: panel_state.STATE.status == "cancelled")
res["cancel_status"], res["cancel_message"] = panel_state.STATE.status, panel_state.STATE.message
res["cancel_record"] = dict(session.JOBS.find(panel_state.STATE.job_id) or {})
res["requests"] = list(requests)
res["jobs_listed"] = [r["job_id"] for r in session.JOBS.records()]

# A studio backend's credentials file in the preferences: the connection signs as its user
# over CurveZMQ (tests/addon/test_addon_connection.py connects with such settings).
from backend.users import add_user  # noqa: E402
from blender_addon.preferences import get_connection  # noqa: E402

cred = add_user(work / "studio", "alice")
prefs.credentials_file = cred["path"]
settings = get_connection()
res["credentials_settings"] = {"address": settings["address"], "user": settings["user"],
                               "key": settings["key"].decode(), "curve": [k.decode() for k in settings["curve"]]}
res["credentials_expected"] = {"address": address, "user": "alice", "key": cred["key"],
                               "curve": [cred["curve_public"], cred["curve_secret"], cred["server_public"]]}
Path(cred["path"]).chmod(0o644)
try:
    get_connection()
    res["open_credentials_error"] = None
except PermissionError as exc:
    res["open_credentials_error"] = str(exc)
prefs.credentials_file = ""

addon_utils.disable("blender_addon")
res["timer_after_disable"] = timer.running()
stop.set()
server.join(15)
print("RESULT: " + json.dumps(res))
