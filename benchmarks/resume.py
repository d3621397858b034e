"""A job survives a crash: held-out PSNR of a fit killed with SIGKILL mid-fit and resumed
after a restart, against the same fit run uninterrupted.

Both runs go through a real ``python -m backend serve`` subprocess on the demo's footage
(``data/samples/wobble``, the bundled default input of ``scripts/demo.sh``) with the same
spec and seed. Run 1 runs to the end. Run 2 is killed with SIGKILL once its progress passes
``--kill-at`` of the steps and a checkpoint exists; a new backend on the same data folder
resumes it from the checkpoint and completes it. Both results are scored like the demo
(held-out cameras of ``transforms_test.json``, all times, on white;
:mod:`backend.eval.metrics`), and their parameters are compared.

The fit is scheduled by steps (``time_budget_s`` 0): a time-budgeted fit depends on the
wall clock, so two runs of it differ even without a crash.

Writes ``benchmarks/results/resume.json``. Usage::

    python benchmarks/resume.py [--footage data/samples/wobble] [--preset draft] [--iterations 500]
        [--checkpoint-every-s 5] [--kill-at 0.5] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from protocol import BackendClient  # noqa: E402
from tests.helpers.backend_proc import BackendProcess  # noqa: E402


def _shown(path: Path) -> str:
    """``path`` relative to the repository when inside it (reports do not name this machine's folders)."""
    root = Path(__file__).resolve().parents[1]
    try:
        return Path(path).resolve().relative_to(root).as_posix()
    except ValueError:
        return str(path)


def score(result_dir: Path, footage: Path) -> dict:
    """Held-out scores of a result folder (the demo's :func:`score_result` measure)."""
    from backend.eval.metrics import score_images, summarize
    from backend.pipeline.export import load_model
    from backend.pipeline.ingest import load_footage
    from backend.render.frames import render_rgba

    test = load_footage(footage, "test")
    model = load_model(result_dir)
    pred = render_rgba(model, test.viewmats, test.Ks, test.times, test.width, test.height)
    return summarize(score_images(pred, test.images))


def wait_events(client: BackendClient, job: str, until, timeout_s: float) -> list[dict]:
    """Collect the job's events until ``until(event)`` is true; raises on a timeout or a
    failed/cancelled job."""
    events, deadline = [], time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ev = client.poll_event(0.5)
        if not ev or ev.get("job_id") != job:
            continue
        events.append(ev)
        if ev["type"] in ("failed", "cancelled"):
            raise RuntimeError(f"job {job} {ev['type']}: {ev.get('code')} {ev.get('message')}")
        if until(ev):
            return events
    raise TimeoutError(f"job {job}: gave up after {timeout_s:.0f} s")


def run_uninterrupted(data: Path, footage: Path, spec: dict, env: dict, out: Path) -> dict:
    """One job from submit to completion on one backend."""
    t0 = time.monotonic()
    proc = BackendProcess(data, extra_env=env)
    try:
        with proc.client(timeout_s=60) as c:
            job = c.submit_footage(footage, spec)
            wait_events(c, job, lambda e: e["type"] == "completed", 1800)
            c.fetch_result(job, out)
    finally:
        proc.stop()
    return {"job": job, "wall_s": time.monotonic() - t0}


def run_killed(data: Path, footage: Path, spec: dict, env: dict, out: Path, kill_step: int) -> dict:
    """One job killed with SIGKILL past ``kill_step`` (with a checkpoint on disk), resumed
    by a second backend on the same data folder."""
    t0 = time.monotonic()
    proc = BackendProcess(data, extra_env=env)
    try:
        with proc.client(timeout_s=60) as c:
            job = c.submit_footage(footage, spec)
            ckpt = data / "jobs" / job / "checkpoint" / "reconstruct.pt"
            seen = wait_events(c, job, lambda e: e["type"] == "progress" and e["stage"] == "reconstruct"
                               and e["step"] >= kill_step and ckpt.is_file(), 1800)
        killed_at = seen[-1]["step"]
        proc.proc.send_signal(signal.SIGKILL)
        proc.proc.wait(30)
        killed_code = proc.proc.returncode
    finally:
        proc.stop()
    import torch
    checkpoint_step = int(torch.load(ckpt, weights_only=True)["loop"]["step"])
    t_restart = time.monotonic()
    proc = BackendProcess(data, extra_env=env)
    try:
        with proc.client(timeout_s=60) as c:
            c.watch(job)
            events = wait_events(c, job, lambda e: e["type"] == "completed", 1800)
            c.fetch_result(job, out)
        first_steps = [e["step"] for e in events if e["type"] == "progress" and e["stage"] == "reconstruct"][:3]
    finally:
        proc.stop()
    return {"job": job, "killed_at_step_about": killed_at, "exit_code_of_killed_backend": killed_code,
            "checkpoint_step_on_disk": checkpoint_step, "first_progress_steps_after_restart": first_steps,
            "restart_to_done_s": time.monotonic() - t_restart, "wall_s": time.monotonic() - t0}


def param_diff(a: Path, b: Path) -> dict:
    """Max absolute difference of the two results' model parameters (None if shapes differ)."""
    from backend.pipeline.export import load_model

    ma, mb = load_model(a).state_dict(), load_model(b).state_dict()
    if ma.keys() != mb.keys() or any(ma[k].shape != mb[k].shape for k in ma):
        return {"same_shapes": False}
    return {"same_shapes": True, "max_abs_diff": max(float((ma[k].float() - mb[k].float()).abs().max()) for k in ma),
            "bit_identical": all(bool((ma[k] == mb[k]).all()) for k in ma)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--footage", type=Path, default=ROOT / "data" / "samples" / "wobble")
    p.add_argument("--preset", default="draft")
    p.add_argument("--iterations", type=int, default=500)
    p.add_argument("--checkpoint-every-s", type=float, default=5.0)
    p.add_argument("--kill-at", type=float, default=0.5, help="fraction of the steps after which to kill")
    p.add_argument("--threads", type=int, default=2, help="torch/OpenMP threads of each backend process")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "resume.json")
    args = p.parse_args(argv)
    footage = args.footage.resolve()
    if not (footage / "transforms_train.json").is_file():
        print(f"no footage at {footage}: run scripts/demo.sh once (it renders data/samples/wobble) or pass "
              f"--footage", file=sys.stderr)
        return 2
    env = {"OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    spec = {"job_type": "footage", "preset": args.preset, "name": "resume-benchmark",
            "options": {"iterations": args.iterations, "time_budget_s": 0,
                        "checkpoint_every_s": args.checkpoint_every_s}}
    with tempfile.TemporaryDirectory(prefix="gen4d-resume-") as tmp:
        tmp = Path(tmp)
        base = run_uninterrupted(tmp / "a", footage, spec, env, tmp / "result_a")
        killed = run_killed(tmp / "b", footage, spec, env, tmp / "result_b", int(args.iterations * args.kill_at))
        sa, sb = score(tmp / "result_a", footage), score(tmp / "result_b", footage)
        ma = json.loads((tmp / "result_a" / "manifest.json").read_text())["stats"]
        mb = json.loads((tmp / "result_b" / "manifest.json").read_text())["stats"]
        diff = param_diff(tmp / "result_a", tmp / "result_b")
    stat_keys = ("iterations", "seconds", "it_per_s", "n_gaussians", "final_loss", "resumed_from_step", "checkpoints",
                 "checkpoint_seconds", "checkpoint_bytes")
    result = {
        "footage": _shown(footage), "spec": spec, "threads": args.threads,
        "heldout": "test cameras (transforms_test.json), all times, composited on white",
        "uninterrupted": {"psnr": sa["psnr"], "ssim": sa["ssim"], **base, "stats": {k: ma.get(k) for k in stat_keys}},
        "killed_and_resumed": {"psnr": sb["psnr"], "ssim": sb["ssim"], **killed,
                               "stats": {k: mb.get(k) for k in stat_keys}},
        "psnr_diff_db": sb["psnr"] - sa["psnr"],
        "within_0_3_db": abs(sb["psnr"] - sa["psnr"]) <= 0.3,
        "parameters": diff,
        "command": "python benchmarks/resume.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"uninterrupted {sa['psnr']:.3f} dB, killed at step ~{killed['killed_at_step_about']} and resumed from "
          f"{mb.get('resumed_from_step')}: {sb['psnr']:.3f} dB, diff {result['psnr_diff_db']:+.4f} dB; "
          f"parameters {diff}; wrote {args.out}")
    return 0 if result["within_0_3_db"] else 1


if __name__ == "__main__":
    sys.exit(main())
