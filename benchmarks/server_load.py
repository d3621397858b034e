"""Load a real backend subprocess with N concurrent clients (issue 16 item 7).

Starts a backend on a free loopback port with a fresh data folder, then runs ``--clients``
threads, each with its own :class:`protocol.BackendClient`. Each client says ``hello``,
submits ``--jobs-per-client`` small jobs, and until they all end pings every
``--ping-interval`` seconds (timing each ping), collecting job events; it fetches the result
of every completed job and finally lists the jobs. A sampler thread records the server's RSS
every second.

Pipelines (``--pipeline``):

- ``real`` (default): ``python -m backend serve``, each job a ``tiny`` preset fit of a
  synthetic 4-camera, 3-time-step, 32 px footage folder (``tests/helpers/footage.py``),
  uploaded with the job. The one worker runs the jobs one after another.
- ``fake``: the server with ``run_job`` replaced by the fake pipeline of
  ``tests/backend/test_server_inprocess.py`` (started with ``python -c``), so a job ends at
  once: this measures the server, not the fit. The output says which one ran.

The server runs with ``OMP_NUM_THREADS=1`` (and the MKL/OpenBLAS/Numba equivalents) in fake
mode; in real mode its thread counts are left to :mod:`backend.compute_threads`.

Reports ping latency percentiles (p50/p95/p99, ms), throughput (jobs/s, requests/s), RSS
over time, lost jobs (submitted but no terminal event reached the client, or missing from
its ``list_jobs``), failed jobs, and foreign jobs (jobs in a client's ``list_jobs`` that its
user did not submit; only meaningful with ``--users 2``, per-user keys from
:mod:`backend.users`, which must exist for that mode). Writes
``benchmarks/results/server_load.json`` (``--out``).

Usage (hold the CPU lock)::

    flock /work/exp/cpu.lock .venv/bin/python benchmarks/server_load.py
    flock /work/exp/cpu.lock .venv/bin/python benchmarks/server_load.py --pipeline fake --jobs-per-client 10
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.fuzz_server import rss_bytes  # noqa: E402
from protocol import BackendClient  # noqa: E402
from protocol.client import collect_footage_files  # noqa: E402
from protocol.messages import TERMINAL_EVENTS  # noqa: E402
from tests.helpers.backend_proc import BackendProcess  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
              "NUMBA_NUM_THREADS": "1"}
#: what ``--pipeline fake`` runs before ``serve``: the test suite's fake ``run_job``.
FAKE_PRELUDE = ("from tests.backend.test_server_inprocess import fake_run_job\n"
                "from backend.pipeline import runner\n"
                "runner.run_job = fake_run_job\n")


def percentile(values: list[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) of ``values`` by linear interpolation; None if empty."""
    if not values:
        return None
    s = sorted(values)
    pos = (len(s) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def make_users(data_dir: Path, count: int) -> list[dict]:
    """``count`` users from :func:`backend.users.add_user` (``{"user", "key"}``), or one
    ``{"user": None, "key": None}`` (the server's own key) when ``count`` is 1.

    Raises:
        SystemExit: ``count`` > 1 and this checkout has no ``backend.users`` or no
            ``BackendClient(..., user=...)``.
    """
    if count <= 1:
        return [{"user": None, "key": None}]
    try:
        from backend import users
    except ImportError:
        raise SystemExit(f"--users {count} needs per-user keys (backend.users.add_user), which this checkout "
                         f"does not have yet; run with --users 1") from None
    if "user" not in inspect.signature(BackendClient).parameters:
        raise SystemExit(f"--users {count} needs BackendClient(address, key, user=NAME), which this checkout "
                         f"does not have yet; run with --users 1")
    made = []
    for i in range(count):
        u = users.add_user(data_dir, f"load{i}")
        made.append({"user": u["user"], "key": u["key"].encode("ascii")})
    return made


class LoadClient(threading.Thread):
    """One client thread: submit jobs, ping until they end, fetch results, list jobs.

    Attributes (read after :meth:`join`): ``submitted`` job ids; ``terminal``
    ``{job_id: event type}``; ``pings`` latencies (s); ``requests`` sent; ``listed`` job ids
    from the final ``list_jobs`` (``listed_ok`` once it answered); ``errors`` text of anything that went wrong.
    """

    def __init__(self, index: int, address: str, key: bytes, user: dict, args, files: dict, spec: dict,
                 start_gate: threading.Event):
        super().__init__(name=f"load-{index}", daemon=True)
        self.index, self.address, self.key, self.user = index, address, key, user
        self.args, self.files, self.spec, self.gate = args, files, spec, start_gate
        self.submitted: list[str] = []
        self.terminal: dict[str, str] = {}
        self.pings: list[float] = []
        self.requests = 0
        self.listed: list[str] = []
        self.listed_ok = False
        self.fetched_files = 0
        self.errors: list[str] = []
        self.done_at: float | None = None

    def _client(self) -> BackendClient:
        if self.user["user"] is None:
            return BackendClient(self.address, self.key, timeout_s=self.args.request_timeout)
        return BackendClient(self.address, self.user["key"], timeout_s=self.args.request_timeout,
                             user=self.user["user"])

    def _drain(self, client: BackendClient, wait_s: float) -> None:
        ev = client.poll_event(wait_s)
        while ev is not None:
            if ev["type"] in TERMINAL_EVENTS and ev.get("job_id") in self.submitted:
                self.terminal.setdefault(ev["job_id"], ev["type"])
            ev = client.poll_event(0)

    def run(self) -> None:
        self.gate.wait()
        try:
            with self._client() as c:
                c.hello()
                self.requests += 1
                for j in range(self.args.jobs_per_client):
                    spec = dict(self.spec, name="ok" if self.args.pipeline == "fake" else f"load-c{self.index}-j{j}")
                    self.submitted.append(c.submit(spec, self.files))
                    self.requests += 1
                deadline = time.monotonic() + self.args.job_timeout
                fetched: set[str] = set()
                while time.monotonic() < deadline:
                    self.pings.append(c.ping())
                    self.requests += 1
                    self._drain(c, self.args.ping_interval)
                    for job_id, kind in list(self.terminal.items()):
                        if kind == "completed" and job_id not in fetched:
                            out = Path(tempfile.mkdtemp(prefix="gen4d-load-"))
                            try:
                                c.fetch_result(job_id, out, on_chunk=lambda i, n: self._count_chunk())
                            finally:
                                shutil.rmtree(out, ignore_errors=True)
                            fetched.add(job_id)
                    if len(self.terminal) == len(self.submitted):
                        break
                self.done_at = time.monotonic()
                jobs = c.list_jobs()
                self.requests += 1
                self.listed = [j["job_id"] for j in jobs]
                self.listed_ok = True
        except Exception as e:  # noqa: BLE001 - reported, the other clients go on
            self.errors.append(f"{type(e).__name__}: {e}")
            self.done_at = self.done_at or time.monotonic()

    def _count_chunk(self) -> None:
        self.fetched_files += 1
        self.requests += 1


def main(argv=None) -> int:
    """Run the load test; return 0 when no job was lost and no client failed."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--jobs-per-client", type=int, default=2)
    ap.add_argument("--pipeline", choices=("real", "fake"), default="real")
    ap.add_argument("--users", type=int, default=1, help="2: clients alternate between two users (backend.users)")
    ap.add_argument("--ping-interval", type=float, default=0.2, help="seconds between a client's pings")
    ap.add_argument("--request-timeout", type=float, default=30.0)
    ap.add_argument("--job-timeout", type=float, default=900.0, help="how long a client waits for its jobs")
    ap.add_argument("--out", type=Path, default=RESULTS / "server_load.json")
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="gen4d-load-"))
    data_dir = tmp / "data"
    data_dir.mkdir(parents=True)
    try:
        users = make_users(data_dir, args.users)
    except SystemExit:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if args.pipeline == "real":
        from tests.helpers.footage import make_tiny_footage

        files = collect_footage_files(make_tiny_footage(tmp / "footage", n_cams=4, n_times=3, size=32))
        spec = {"job_type": "footage", "preset": "tiny"}
        server = BackendProcess(data_dir, startup_timeout_s=60)
    else:
        files, spec = {"in/a.bin": b"x" * 1024}, {"job_type": "footage"}
        server = BackendProcess(data_dir, prelude=FAKE_PRELUDE, extra_env=THREAD_ENV)
    pid = server.proc.pid
    label = ("REAL pipeline: python -m backend serve, tiny preset, 4x3 frames of 32 px footage per job"
             if args.pipeline == "real" else
             "FAKE pipeline (tests/backend/test_server_inprocess.fake_run_job; jobs end at once, no fitting)")
    print(f"{label}\nserver pid {pid} at {server.address}; {args.clients} clients x {args.jobs_per_client} "
          f"job(s), {len(users)} user(s)", flush=True)

    rss: list[tuple[float, int]] = []
    stop_sampler = threading.Event()
    t0 = time.monotonic()

    def sample() -> None:
        while not stop_sampler.is_set():
            try:
                rss.append((time.monotonic() - t0, rss_bytes(pid)))
            except (OSError, Exception):  # noqa: BLE001 - the process may be gone
                pass
            stop_sampler.wait(1.0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    gate = threading.Event()
    clients = [LoadClient(i, server.address, server.key, users[i % len(users)], args, files, spec, gate)
               for i in range(args.clients)]
    for c in clients:
        c.start()
    t_start = time.monotonic()
    gate.set()
    for c in clients:
        c.join(args.job_timeout + 120)
    wall = time.monotonic() - t_start
    stop_sampler.set()
    sampler.join(5)
    alive = server.proc.poll() is None
    exit_code = server.stop()
    log = server.log_text()
    shutil.rmtree(tmp, ignore_errors=True)

    pings = [p for c in clients for p in c.pings]
    submitted = sum(len(c.submitted) for c in clients)
    terminal = {k: v for c in clients for k, v in c.terminal.items()}
    by_outcome: dict[str, int] = {}
    for kind in terminal.values():
        by_outcome[kind] = by_outcome.get(kind, 0) + 1
    lost = []
    for c in clients:
        for job_id in c.submitted:
            why = [w for w, bad in (("no terminal event", job_id not in c.terminal),
                                    ("not in list_jobs", c.listed_ok and job_id not in c.listed))
                   if bad]
            if why:
                lost.append({"client": c.index, "job_id": job_id, "why": why})
    by_user: dict = {}
    for c in clients:
        by_user.setdefault(c.user["user"], set()).update(c.submitted)
    foreign = sum(len([j for j in c.listed if j not in by_user[c.user["user"]]]) for c in clients)
    requests = sum(c.requests for c in clients)
    ms = lambda v: None if v is None else round(v * 1000, 2)  # noqa: E731
    result = {
        "benchmark": "server_load",
        "command": "python benchmarks/server_load.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "pipeline": args.pipeline, "pipeline_label": label,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "clients": args.clients, "jobs_per_client": args.jobs_per_client, "users": len(users),
        "wall_s": round(wall, 2),
        "ping_ms": {"count": len(pings), "p50": ms(percentile(pings, 50)), "p95": ms(percentile(pings, 95)),
                    "p99": ms(percentile(pings, 99)), "max": ms(max(pings) if pings else None)},
        "jobs_submitted": submitted, "jobs_terminal": len(terminal), "jobs_by_outcome": by_outcome,
        "jobs_per_s": round(len(terminal) / wall, 3) if wall else None,
        "requests": requests, "requests_per_s": round(requests / wall, 1) if wall else None,
        "result_files_fetched": sum(c.fetched_files for c in clients),
        "lost_jobs": len(lost), "lost_examples": lost[:10],
        "foreign_jobs_visible": foreign,
        "foreign_note": "jobs in a client's list_jobs not submitted by its user; meaningful only with --users 2",
        "client_errors": [e for c in clients for e in c.errors][:20],
        "server_alive_at_end": alive, "server_exit_code": exit_code,
        "server_log_error_lines": sum(1 for ln in log.splitlines() if " ERROR " in ln),
        "rss_mib": {"start": round(rss[0][1] / 2**20, 1) if rss else None,
                    "max": round(max(r for _, r in rss) / 2**20, 1) if rss else None,
                    "end": round(rss[-1][1] / 2**20, 1) if rss else None},
        "rss_mib_over_time": [[round(t, 1), round(r / 2**20, 1)] for t, r in rss[:: max(1, len(rss) // 120)]],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")

    p = result["ping_ms"]
    print(f"\n{label}")
    print(f"{args.clients} clients, {submitted} jobs in {wall:.1f} s: {result['jobs_per_s']} jobs/s, "
          f"{requests} requests ({result['requests_per_s']}/s)")
    print(f"ping ms ({p['count']}): p50 {p['p50']}  p95 {p['p95']}  p99 {p['p99']}  max {p['max']}")
    print(f"outcomes {by_outcome}; lost jobs {len(lost)}; foreign jobs visible {foreign} "
          f"({'meaningful' if len(users) > 1 else 'one user: not meaningful'}); client errors "
          f"{len(result['client_errors'])}")
    print(f"RSS MiB start {result['rss_mib']['start']}  max {result['rss_mib']['max']}  end {result['rss_mib']['end']}")
    for e in result["client_errors"][:5]:
        print("client error:", e)
    print(f"wrote {args.out}")
    return 1 if lost or result["client_errors"] or not alive else 0


if __name__ == "__main__":
    sys.exit(main())
