"""The ``ray`` executor (issue 17) on a real multi-node Ray cluster on this machine
(:class:`ray.cluster_utils.Cluster`: a head without CPUs and two worker nodes of one CPU
each, labelled with the custom resources ``node_a`` / ``node_b``), behind a real front door
(:func:`tests.helpers.backend_proc.server_thread`), with the fake pipeline
:mod:`tests.helpers.ray_fake_pipeline` imported in the Ray workers (the executor's
``run_job`` seam)."""

import collections
import json
import logging
import os
import re
import threading
import time

import pytest

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

from protocol import BackendClient  # noqa: E402
from tests.backend.test_server_inprocess import wait_for  # noqa: E402
from tests.helpers.backend_proc import server_thread  # noqa: E402

KEY = b"test-key-0123456789abcdef"
FAKE = "tests.helpers.ray_fake_pipeline:run_job"


@pytest.fixture(scope="module")
def cluster():
    """Head (no CPUs) + worker nodes ``node_a`` and ``node_b`` (1 CPU each); this process is the driver."""
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # quiet: no FutureWarning
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    # connected before the workers exist, so the driver attaches to the head's raylet (a worker can be removed)
    ray.init(address=c.address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    workers = {label: c.add_node(num_cpus=1, resources={label: 1}) for label in ("node_a", "node_b")}
    c.wait_for_nodes()
    try:
        yield c, workers
    finally:
        ray.shutdown()
        c.shutdown()


def label_of(node: str) -> str:
    """Which worker label (``node_a``/``node_b``) ran a job, from its ``node`` string."""
    short = re.search(r"node ([0-9a-f]{8})$", node).group(1)
    for n in ray.nodes():
        if n["NodeID"].startswith(short):
            return next(k for k in n["Resources"] if k.startswith("node_"))
    raise AssertionError(f"no Ray node {short}")


class Events:
    """One client's events, kept per job (``wait_for`` drops other jobs' events)."""

    def __init__(self, client):
        self.client, self.jobs, self.cursor = client, collections.defaultdict(list), collections.Counter()

    def wait(self, job, types, timeout_s=30.0):
        """Events of ``job`` since the last call, up to the first of ``types``."""
        deadline = time.monotonic() + timeout_s
        while True:
            new = self.jobs[job][self.cursor[job]:]
            hit = next((i for i, e in enumerate(new) if e["type"] in types), None)
            if hit is not None:
                self.cursor[job] += hit + 1
                return new[:hit + 1]
            if time.monotonic() > deadline:
                raise AssertionError(f"no {types} for {job}; got {[e['type'] for e in new]}")
            ev = self.client.poll_event(0.2)
            if ev:
                self.jobs[ev["job_id"]].append(ev)


def ray_server(tmp_path, c, **options):
    opts = dict(address=c.address, run_job=FAKE, cancel_grace_s=5.0)
    opts.update(options)
    return server_thread(tmp_path / "data", KEY, executor="ray", executor_options=opts, join_timeout_s=30)


class Pinger:
    """Pings the front door every 0.2 s on a thread; ``failures`` counts pings not answered."""

    def __init__(self, address):
        self.address, self.stop, self.count, self.failures = address, threading.Event(), 0, 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        with BackendClient(self.address, KEY, timeout_s=2) as c:
            while not self.stop.is_set():
                try:
                    c.ping()
                    self.count += 1
                except Exception:  # noqa: BLE001 - counted
                    self.failures += 1
                time.sleep(0.2)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(5)


def test_jobs_from_three_clients_spread_over_both_nodes_with_progress(cluster, tmp_path):
    c, _ = cluster
    with ray_server(tmp_path, c) as address, Pinger(address) as pings:
        clients = [BackendClient(address, KEY, timeout_s=10) for _ in range(3)]
        try:
            jobs = [cl.submit({"job_type": "footage", "name": "ok:2.0"}, {f"in{i}.txt": b"x" * i})
                    for i, cl in enumerate(clients)]
            events = [wait_for(cl, job, {"completed", "failed"}, timeout_s=60) for cl, job in zip(clients, jobs)]
            for evs in events:
                types = [e["type"] for e in evs]
                assert types[0] == "started" and types[-1] == "completed", evs[-1]
                assert "progress" in types and "preview" in types
            nodes = [evs[0]["node"] for evs in events]
            assert {label_of(n) for n in nodes} == {"node_a", "node_b"}  # both worker nodes ran jobs
            listed = {j["job_id"]: j for j in clients[0].list_jobs()}
            for job, node in zip(jobs, nodes):
                assert listed[job]["node"] == node
            data = tmp_path / "data" / "jobs"
            for i, (job, node) in enumerate(zip(jobs, nodes)):
                rdir = data / job / "result"
                assert json.loads((rdir / "node.json").read_text())["node"] == node
                assert json.loads((rdir / "manifest.json").read_text())["inputs"] == ([f"in{i}.txt"])
                assert (rdir / "frames" / "frame_0002.ply").read_bytes() == b"ply 2"
        finally:
            for cl in clients:
                cl.close()
    assert pings.count > 5 and pings.failures == 0


def test_cancel_queued_and_running_jobs_and_failures_reach_clients_clean(cluster, tmp_path):
    c, _ = cluster
    with ray_server(tmp_path, c) as address, Pinger(address) as pings, \
            BackendClient(address, KEY, timeout_s=10) as cl:
        evs = Events(cl)
        running = [cl.submit({"name": "slow"}, {"a.txt": b"a"}) for _ in range(2)]
        waiting = cl.submit({"name": "slow"}, {"a.txt": b"a"})
        nodes = []
        for job in running:  # both CPUs busy: the third waits for a node
            nodes += [e["node"] for e in evs.wait(job, {"progress"}, timeout_s=60) if e["type"] == "started"]
        assert {label_of(n) for n in nodes} == {"node_a", "node_b"}
        time.sleep(2.0)  # several cancel-board polls: a polling task must keep its CPU (no third job starts)
        assert {j["job_id"]: j for j in cl.list_jobs()}[waiting]["state"] == "queued"
        t0 = time.monotonic()
        cl.cancel(waiting)
        assert evs.wait(waiting, {"cancelled", "started"}, timeout_s=10)[-1]["type"] == "cancelled"
        assert time.monotonic() - t0 < 5  # (under 1 s on an idle machine)
        t0 = time.monotonic()
        cl.cancel(running[0])  # runs on the other node than running[1]
        assert evs.wait(running[0], {"cancelled", "failed", "completed"}, timeout_s=20)[-1]["type"] == "cancelled"
        assert time.monotonic() - t0 < 10  # stopped on its node within seconds (the task polls every 0.5 s)
        cl.cancel(running[1])
        assert evs.wait(running[1], {"cancelled", "failed", "completed"}, timeout_s=10)[-1]["type"] == "cancelled"
        crash = cl.submit({"name": "crash"}, {"a.txt": b"a"})
        failed = evs.wait(crash, {"failed", "completed"}, timeout_s=60)[-1]
        assert failed["type"] == "failed" and failed["code"] == "internal_error"
        assert "secret" not in json.dumps(failed) and "ref " in failed["message"]
    assert pings.failures == 0


def test_a_gpu_job_on_a_cpu_only_cluster_fails_at_once(cluster, tmp_path):
    c, _ = cluster
    with ray_server(tmp_path, c, gpus_per_job=1) as address, BackendClient(address, KEY, timeout_s=10) as cl:
        t0 = time.monotonic()
        job = cl.submit({"name": "ok"}, {"a.txt": b"a"})
        ev = wait_for(cl, job, {"failed", "completed", "started"}, timeout_s=10)[-1]
        assert ev["type"] == "failed" and ev["code"] == "no_resources" and "GPU" in ev["message"]
        assert time.monotonic() - t0 < 5


def test_a_real_tiny_job_runs_on_a_node_through_the_default_pipeline(cluster, tmp_path):
    from tests.helpers.footage import make_tiny_footage

    c, _ = cluster
    footage = make_tiny_footage(tmp_path / "footage")
    with ray_server(tmp_path, c, run_job=None) as address, BackendClient(address, KEY, timeout_s=30) as cl:
        evs = Events(cl)
        job = cl.submit_footage(footage, {"job_type": "footage", "preset": "tiny"})
        events = evs.wait(job, {"completed", "failed", "cancelled"}, timeout_s=150)
        assert events[-1]["type"] == "completed", events[-1]
        assert any(e["type"] == "progress" and e["stage"] == "reconstruct" for e in events)
        rdir = tmp_path / "data" / "jobs" / job / "result"
        manifest = json.loads((rdir / "manifest.json").read_text())
        assert manifest["frame_count"] == events[-1]["frame_count"] == 3
        assert all((rdir / f).stat().st_size > 0 for f in manifest["frame_files"])
        assert json.loads((rdir / "node.json").read_text())["node"] == events[0]["node"]
        assert manifest["stats"]["node"]["node"] == events[0]["node"]  # the node, in the job's manifest


def test_stopping_the_front_door_interrupts_running_jobs_and_keeps_waiting_ones_queued(cluster, tmp_path):
    from backend.jobs import JobStore

    c, _ = cluster
    with ray_server(tmp_path, c) as address, BackendClient(address, KEY, timeout_s=10) as cl:
        evs = Events(cl)
        running = [cl.submit({"name": "slow"}, {"a.txt": b"a"}) for _ in range(2)]
        waiting = cl.submit({"name": "slow"}, {"a.txt": b"a"})
        for job in running:
            evs.wait(job, {"progress"}, timeout_s=60)
        t0 = time.monotonic()
    assert time.monotonic() - t0 < 15
    store = JobStore(tmp_path / "data")
    try:
        jobs = {j["job_id"]: j for j in store.list()}
        assert [(jobs[j]["state"], jobs[j]["error_code"]) for j in running] == [("failed", "interrupted")] * 2
        assert jobs[waiting]["state"] == "queued" and store.pending == [waiting]  # submitted again on restart
    finally:
        store.close()


def test_an_unreachable_cluster_address_is_a_clear_error():
    from backend.ray_executor import _check_reachable

    with pytest.raises(ConnectionError, match="no Ray cluster answers at 127.0.0.1:1"):
        _check_reachable("127.0.0.1:1")


def test_a_node_killed_mid_job_leads_to_a_retry_on_the_other_node(cluster, tmp_path):
    c, workers = cluster
    with ray_server(tmp_path, c) as address, Pinger(address) as pings, \
            BackendClient(address, KEY, timeout_s=10) as cl:
        job = cl.submit({"name": "ok:4.0"}, {"a.txt": b"a"})
        first = wait_for(cl, job, {"progress"}, timeout_s=60)
        node = [e for e in first if e["type"] == "started"][0]["node"]
        victim = label_of(node)
        c.remove_node(workers[victim])
        events = wait_for(cl, job, {"completed", "failed"}, timeout_s=60)
        started = [e["node"] for e in events if e["type"] == "started"]
        assert events[-1]["type"] == "completed", events[-1]
        assert started and label_of(started[-1]) != victim  # retried on the surviving node
        assert any("retrying" in (e.get("message") or "") for e in events if e["type"] == "progress")
        assert json.loads((tmp_path / "data" / "jobs" / job / "result" / "node.json").read_text())["attempt"] == 2
    assert pings.failures == 0
    workers[victim] = c.add_node(num_cpus=1, resources={victim: 1})  # restore the cluster for later tests


def test_a_job_whose_node_dies_more_often_than_allowed_fails_with_node_lost(cluster, tmp_path):
    c, workers = cluster
    with ray_server(tmp_path, c, max_attempts=1) as address, BackendClient(address, KEY, timeout_s=10) as cl:
        evs = Events(cl)
        job = cl.submit({"name": "slow"}, {"a.txt": b"a"})
        node = [e for e in evs.wait(job, {"progress"}, timeout_s=60) if e["type"] == "started"][0]["node"]
        victim = label_of(node)
        c.remove_node(workers[victim])
        ev = evs.wait(job, {"completed", "failed", "cancelled"}, timeout_s=60)[-1]
        assert ev["type"] == "failed" and ev["code"] == "node_lost", ev
        assert cl.ping() < 5
    workers[victim] = c.add_node(num_cpus=1, resources={victim: 1})


def test_queue_position_counts_the_jobs_not_started_on_a_node_yet(cluster, tmp_path):
    import queue

    from backend.jobs import JobStore
    from backend.ray_executor import RayExecutor

    c, _ = cluster
    store = JobStore(tmp_path / "data")
    events: "queue.Queue" = queue.Queue()
    ex = RayExecutor(store, lambda h, b: events.put(h), address=c.address, run_job=FAKE)
    ex.start()
    try:
        ids = [store.create({"name": "slow"}, [("a.txt", b"a")])["job_id"] for _ in range(4)]
        for job in ids:
            ex.enqueue(job)
        started, deadline = set(), time.monotonic() + 60
        while len(started) < 2 and time.monotonic() < deadline:  # two 1-CPU nodes: two start
            h = events.get(timeout=60)
            if h["type"] == "started":
                started.add(h["job_id"])
        time.sleep(1.0)
        waiting = [j for j in ids if store.get(j)["state"] == "queued"]
        assert len(started) == 2 and len(waiting) == 2
        assert [ex.queue_position(j) for j in waiting] == [0, 1]
    finally:
        ex.stop()
        store.close()
