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

Run: ``HF_HUB_OFFLINE=1 PYTHONPATH=. python benchmarks/cluster.py`` (about 1 min);
writes ``benchmarks/results/cluster.json``.
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


def _run_jobs(executor, store, events: "queue.Queue", n: int, seconds: float) -> float:
    """Submit ``n`` fake jobs, wait for all to complete; returns the wall seconds.

    Raises:
        RuntimeError: a job ended other than ``completed``, or 300 s passed.
    """
    t0 = time.perf_counter()
    ids = set()
    for i in range(n):
        job = store.create({"job_type": "footage", "name": f"ok:{seconds}"}, [(f"in{i}.txt", b"x" * 1000)])
        ids.add(job["job_id"])
        executor.enqueue(job["job_id"])
    done = set()
    deadline = time.monotonic() + 300
    while done != ids:
        header, _ = events.get(timeout=max(0.1, deadline - time.monotonic()))
        if header["type"] in ("completed", "failed", "cancelled"):
            if header["type"] != "completed":
                raise RuntimeError(f"job {header['job_id']} ended {header}")
            done.add(header["job_id"])
    return time.perf_counter() - t0


def _local(n: int, seconds: float) -> tuple[float, float]:
    """(seconds for ``n`` jobs, seconds for one job) on the local executor."""
    from backend.jobs import JobStore
    from backend.pipeline import runner
    from backend.worker import Worker
    from tests.helpers import ray_fake_pipeline

    runner.run_job = ray_fake_pipeline.run_job  # the local worker calls runner.run_job
    with tempfile.TemporaryDirectory() as d:
        store = JobStore(Path(d))
        events: "queue.Queue" = queue.Queue()
        w = Worker(store, lambda h, b: events.put((h, b)))
        w.start()
        try:
            return _run_jobs(w, store, events, n, seconds), _run_jobs(w, store, events, 1, seconds)
        finally:
            w.stop()
            store.close()


def _ray(nodes: int, n: int, seconds: float) -> tuple[float, float]:
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
            ex = RayExecutor(store, lambda h, b: events.put((h, b)), address=cluster.address, run_job=FAKE)
            ex.start()
            try:
                _run_jobs(ex, store, events, nodes, seconds)  # warm-up: worker processes start on every node
                return _run_jobs(ex, store, events, n, seconds), _run_jobs(ex, store, events, 1, seconds)
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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    local, local_1 = _local(args.jobs, args.job_seconds)
    one, ray_1 = _ray(1, args.jobs, args.job_seconds)
    two, _ = _ray(2, args.jobs, args.job_seconds)
    result = {
        "jobs": args.jobs, "job_kind": "fake (tests.helpers.ray_fake_pipeline, sleeps)",
        "job_seconds": args.job_seconds,
        "seconds_local": round(local, 3), "seconds_1_node": round(one, 3), "seconds_2_nodes": round(two, 3),
        "speedup_2_nodes": round(one / two, 3), "overhead_per_job_s": round((one - local) / args.jobs, 3),
        "seconds_one_job_local": round(local_1, 3), "seconds_one_job_ray": round(ray_1, 3),
        "latency_overhead_one_job_s": round(ray_1 - local_1, 3),
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}, nodes are 1-CPU Ray "
                   f"nodes on this one machine",
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
