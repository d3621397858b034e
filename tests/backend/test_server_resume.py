"""A job survives a crash: a REAL backend subprocess is killed with SIGKILL mid-fit and
restarted on the same data folder; the job resumes from its last checkpoint and completes."""

import json
import signal
import time

import pytest
import torch

from tests.helpers.backend_proc import BackendProcess
from tests.helpers.footage import make_tiny_footage

pytestmark = pytest.mark.timeout(240)

ITERATIONS = 500
SPEC = {"job_type": "footage", "preset": "tiny",
        "options": {"iterations": ITERATIONS, "checkpoint_every_s": 0.5}}
THREADS = {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}


def _wait(predicate, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_kill_9_mid_fit_then_restart_resumes_and_completes(tmp_path):
    footage = make_tiny_footage(tmp_path / "footage")
    data = tmp_path / "data"
    proc = BackendProcess(data, extra_env=THREADS)
    try:
        with proc.client() as c:
            job = c.submit_footage(footage, SPEC)
        ckpt = data / "jobs" / job / "checkpoint" / "reconstruct.pt"
        _wait(ckpt.is_file, 90, "the first checkpoint")
        time.sleep(0.3)  # let the fit run on past the checkpoint: those steps are lost to the kill
        proc.proc.send_signal(signal.SIGKILL)
        proc.proc.wait(10)
    finally:
        proc.stop()
    assert proc.proc.returncode == -signal.SIGKILL
    saved = torch.load(ckpt, weights_only=True)  # the file is whole after kill -9
    saved_step = saved["loop"]["step"]
    assert 0 < saved_step < ITERATIONS and not saved["loop"]["finished"]

    proc = BackendProcess(data, extra_env=THREADS)
    try:
        with proc.client(timeout_s=10) as c:
            c.watch(job)
            events, deadline = [], time.monotonic() + 120
            while time.monotonic() < deadline:
                ev = c.poll_event(0.5)
                if ev and ev["job_id"] == job:
                    events.append(ev)
                    if ev["type"] in ("completed", "failed", "cancelled"):
                        break
            assert events and events[-1]["type"] == "completed", (events[-3:], proc.log_text()[-3000:])
            [state] = [j for j in c.list_jobs() if j["job_id"] == job]
        steps = [e["step"] for e in events if e["type"] == "progress" and e["stage"] == "reconstruct"]
        assert steps and min(steps) >= saved_step  # no progress event from step 0: the fit did not start over
    finally:
        assert proc.stop() == 0
    assert state["state"] == "completed"
    manifest = json.loads((data / "jobs" / job / "result" / "manifest.json").read_text())
    assert manifest["stats"]["resumed_from_step"] >= saved_step  # the last checkpoint before the kill
    assert manifest["stats"]["iterations"] == ITERATIONS
    assert f"resumed from the checkpoint at step {manifest['stats']['resumed_from_step']}" in proc.log_text()
    assert not (data / "jobs" / job / "checkpoint").exists()  # deleted when the job completed


def test_sigterm_mid_fit_keeps_the_checkpoint_and_the_job_resumes(tmp_path):
    footage = make_tiny_footage(tmp_path / "footage")
    data = tmp_path / "data"
    spec = {**SPEC, "options": {**SPEC["options"], "checkpoint_every_s": 0}}  # only the shutdown saves one
    proc = BackendProcess(data, extra_env=THREADS)
    try:
        with proc.client() as c:
            job = c.submit_footage(footage, spec)
            c.watch(job)
            _wait(lambda: (lambda ev: ev and ev["job_id"] == job and ev["type"] == "progress"
                           and ev["stage"] == "reconstruct" and ev["step"] > 20)(c.poll_event(0.5)), 90,
                  "the fit to run")
    finally:
        assert proc.stop() == 0  # SIGTERM: a clean shutdown
    assert (data / "jobs" / job / "checkpoint" / "reconstruct.pt").is_file()
    from backend.jobs import JobStore
    store = JobStore(data)
    assert store.get(job)["state"] == "queued" and store.pending == [job]
    store.close()
    proc = BackendProcess(data, extra_env=THREADS)
    try:
        with proc.client() as c:
            c.watch(job)
            _wait(lambda: [j for j in c.list_jobs() if j["job_id"] == job and j["state"] == "completed"], 120,
                  "the resumed job to complete")
    finally:
        assert proc.stop() == 0
    manifest = json.loads((data / "jobs" / job / "result" / "manifest.json").read_text())
    assert manifest["stats"]["resumed_from_step"] > 20 and manifest["stats"]["iterations"] == ITERATIONS
