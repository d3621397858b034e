"""Wall time of 8 jobs on a Ray cluster of one worker node and of two (issue 17), and the
``ray`` executor's per-job overhead against the ``local`` executor.

The jobs are FAKE (:mod:`tests.helpers.ray_fake_pipeline`, ``name="ok:<seconds>"``): each sleeps
``--job-seconds`` in progress steps and writes three small frame files, so the numbers
measure scheduling, event streaming and result shipping, not the fit; real ``tiny`` jobs
on this 2-core machine would make two 1-CPU nodes compete for the same two cores (and
with the other processes on it), which says nothing about a cluster of separate machines.

Each cluster is a :class:`ray.cluster_utils.Cluster` on this machine: a head without CPUs
and N worker nodes of one CPU each (so one job per node at a time). The executors are
driven directly through the job store (no sockets): submit 8 jobs, wait for 8
``completed`` events. ``overhead_per_job_s`` = (1-node Ray time − local time) / 8: what a
job costs extra when it runs as a Ray task (task start, runtime env, shipping inputs,
events and results) rather than on the front door's thread, in a queue of jobs (the next
task's start overlaps the previous one's end); ``latency_overhead_one_job_s`` is the same
for a single job submitted alone (submit to ``completed``). Cluster start-up and the
first job per node (worker process start) are excluded.

With ``--tiny`` the jobs are real ``tiny`` preset fits of :func:`tests.helpers.footage.make_tiny_footage`
(written to ``benchmarks/results/cluster_tiny.json``): each Ray node is one CPU (Ray sets
``OMP_NUM_THREADS=1`` in its workers) while the local executor's fit uses the machine's
threads, so there the 1-node/local comparison mixes thread counts.

Run: ``HF_HUB_OFFLINE=1 PYTHONPATH=. python benchmarks/cluster.py [--tiny]`` (about 1 min
each); writes ``benchmarks/results/cluster.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import queue
import tempfile
import time
from pathlib import Path

RESULT = Path(__file__).resolve().parent / "results" / "cluster.json"
FAKE = "tests.helpers.ray_fake_pipeline:run_job"


def _run_jobs(executor, store, events: "queue.Queue", n: int, job: tuple) -> float:
    """Submit ``n`` jobs (``job`` = (spec, [(name, bytes)])), wait for all to complete;
    returns the wall seconds.

    Raises:
        RuntimeError: a job ended other than ``completed``, or 300 s passed.
    """
    t0 = time.perf_counter()
    ids = set()
    for i in range(n):
        rec = store.create(*job)
        ids.add(rec["job_id"])
        executor.enqueue(rec["job_id"])
    done = set()
    deadline = time.monotonic() + 300
    while done != ids:
        header, _ = events.get(timeout=max(0.1, deadline - time.monotonic()))
        if header["type"] in ("completed", "failed", "cancelled"):
            if header["type"] != "completed":
                raise RuntimeError(f"job {header['job_id']} ended {header}")
            done.add(header["job_id"])
    return time.perf_counter() - t0


def _local(n: int, job: tuple, fake: bool) -> tuple[float, float]:
    """(seconds for ``n`` jobs, seconds for one job) on the local executor."""
    from backend.jobs import JobStore
    from backend.pipeline import runner
    from backend.worker import Worker
    from tests.helpers import ray_fake_pipeline

    if fake:
        runner.run_job = ray_fake_pipeline.run_job  # the local worker calls runner.run_job
    with tempfile.TemporaryDirectory() as d:
        store = JobStore(Path(d))
        events: "queue.Queue" = queue.Queue()
        w = Worker(store, lambda h, b: events.put((h, b)))
        w.start()
        try:
            _run_jobs(w, store, events, 1, job)  # warm-up: imports (torch for real jobs)
            return _run_jobs(w, store, events, n, job), _run_jobs(w, store, events, 1, job)
        finally:
            w.stop()
            store.close()


def _ray(nodes: int, n: int, job: tuple, run_job) -> tuple[float, float]:
    """(seconds for ``n`` jobs, seconds for one job) on a Ray cluster of ``nodes`` 1-CPU worker nodes."""
    import os

    import ray
    from ray.cluster_utils import Cluster

    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # quiet: no FutureWarning

    from backend.jobs import JobStore
    from backend.ray_executor import RayExecutor

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    for _ in range(nodes):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        with tempfile.TemporaryDirectory() as d:
            store = JobStore(Path(d))
            events: "queue.Queue" = queue.Queue()
            ex = RayExecutor(store, lambda h, b: events.put((h, b)), address=cluster.address, run_job=run_job)
            ex.start()
            try:
                _run_jobs(ex, store, events, nodes, job)  # warm-up: worker processes start on every node
                return _run_jobs(ex, store, events, n, job), _run_jobs(ex, store, events, 1, job)
            finally:
                ex.stop()
                store.close()
    finally:
        ray.shutdown()
        cluster.shutdown()


def main(argv: list[str] | None = None) -> dict:
    """Measure and write the JSON; returns it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--job-seconds", type=float, default=1.5, help="how long each fake job sleeps")
    parser.add_argument("--tiny", action="store_true",
                        help="real 'tiny' preset jobs on 4x3 32-px footage instead of fake ones; writes "
                             "results/cluster_tiny.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.tiny:
        from tests.helpers.footage import make_tiny_footage

        folder = make_tiny_footage(Path(tempfile.mkdtemp(prefix="gen4d-bench-")) / "footage")
        files = [(p.relative_to(folder).as_posix(), p.read_bytes()) for p in sorted(folder.rglob("*")) if p.is_file()]
        job, run_job, kind = ({"job_type": "footage", "preset": "tiny"}, files), None, \
            "real tiny preset, make_tiny_footage (4 cameras x 3 times, 32 px)"
    else:
        job, run_job, kind = ({"job_type": "footage", "name": f"ok:{args.job_seconds}"}, [("in.txt", b"x" * 1000)]), \
            FAKE, "fake (tests.helpers.ray_fake_pipeline, sleeps)"
    local, local_1 = _local(args.jobs, job, fake=not args.tiny)
    one, ray_1 = _ray(1, args.jobs, job, run_job)
    two, _ = _ray(2, args.jobs, job, run_job)
    result = {
        "jobs": args.jobs, "job_kind": kind, "job_seconds": None if args.tiny else args.job_seconds,
        "seconds_local": round(local, 3), "seconds_1_node": round(one, 3), "seconds_2_nodes": round(two, 3),
        "speedup_2_nodes": round(one / two, 3), "overhead_per_job_s": round((one - local) / args.jobs, 3),
        "seconds_one_job_local": round(local_1, 3), "seconds_one_job_ray": round(ray_1, 3),
        "latency_overhead_one_job_s": round(ray_1 - local_1, 3),
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}, nodes are 1-CPU Ray "
                   f"nodes on this one machine",
    }
    out = RESULT.with_name("cluster_tiny.json") if args.tiny else RESULT
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
