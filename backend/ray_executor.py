"""The ``ray`` executor (issue 17): each job runs as a Ray task on some node of a Ray cluster.

``python -m backend serve --executor ray --ray-address <head:port | auto>`` keeps the front
door (protocol, authentication, the job store) on one machine and runs the jobs on the
cluster's nodes, as many at once as the cluster has resources for.

How a job runs
--------------
The front door (:class:`RayExecutor`) reads the job's spec and input files (bytes) from the
store and submits :func:`_job_task` with the resources a job needs (``num_gpus=1`` on a GPU
cluster, else ``num_cpus=1``; see *Resources*). On its node the task writes the inputs into a
temporary folder, runs the job function (:func:`backend.pipeline.runner.run_job`, the one
job code path) on a thread with a :class:`~backend.pipeline.context.JobContext`, and
*streams* events back: the task is a Ray streaming generator (``num_returns="streaming"``)
that yields ``started`` (with its node), ``progress``, ``preview``, one ``file`` per result
file (bytes through Ray's object store) and a final ``outcome``. A streaming generator was
chosen over a queue actor because the events then share the task's fate: when the node
dies the front door's iterator raises at once (no orphaned actor state to clean up), the
order of events is kept, and nothing but the task itself has to be scheduled per job.
The front door writes the files into ``store.result_dir(job_id)`` and finishes the job in
the store exactly like the local :class:`backend.worker.Worker` (same events, same error
codes; exception text stays in the node's Ray worker log under a reference).

The node that ran a job is ``"<hostname> (<ip>) node <first 8 hex of the Ray node id>"``:
the ``started`` event's ``node``, the store's ``node`` field, ``result/node.json``
(``{"node": ..., "ray_node_id": ..., "attempt": n}``) and the same record under
``stats["node"]`` of the result's ``manifest.json`` (``stats`` is the manifest's free-form
field, so its format is unchanged).

Cancel: a queued job (its task not started on a node) is cancelled at once (``ray.cancel``
of a task that is still waiting for resources). A running job is cancelled through a small
*cancel board* actor (zero CPUs, placed on the front door's node): the task polls it every
``cancel_poll_s`` (through ``ObjectRef.future()``, never ``ray.get``: a task blocked in
``ray.get`` lends its CPU back and Ray would start another job on its node) and sets the
JobContext's ``cancel_event``, so the pipeline stops at its
next check the same way as locally; if the job has not ended ``cancel_grace_s`` later, the
task is killed (``ray.cancel(force=True)``).

Failures: when the task's worker or node dies (``WorkerCrashedError``, ``NodeDiedError``,
...), the job is submitted again (Ray schedules it on a node that is alive), at most
``max_attempts`` times in all; then it fails with code ``node_lost``. The front door keeps
serving meanwhile (each job is followed on its own thread). A job whose resources no node
has (a GPU job on a CPU-only cluster) fails at once with code ``no_resources``
(``ray.cluster_resources()`` is checked before every submission), never waiting forever.

Resources: presets never name a device (:mod:`protocol.presets`: any preset runs on the
CPU or CUDA), so the executor decides per cluster: ``gpus_per_job="auto"`` requests one GPU
per job when the cluster has GPUs when the executor starts, else one CPU; ``gpus_per_job=1``
forces GPU jobs (they fail with ``no_resources`` on a CPU-only cluster), ``0`` CPU jobs.

Shutdown (:meth:`RayExecutor.stop`): running tasks are cancelled; their jobs become
``failed`` (``interrupted``), as the local worker does for a job without a checkpoint.
Checkpoints are NOT shipped between nodes: the task runs without a checkpoint folder, so a
job interrupted by a shutdown or a lost node starts its fit from the beginning. Jobs still
waiting for a node stay ``queued`` in the store and are submitted again on the next start.

Per-node setup (nothing is shared between nodes: inputs and results travel through Ray's
object store):

- code: every node runs the same gen4d checkout and Python environment; by default the
  task's ``runtime_env={"env_vars": ...}`` puts this checkout's root on ``PYTHONPATH``, so
  install it at the same path on every node (or pass ``env_vars={"PYTHONPATH": ...}``).
- models: ``GEN4D_MODELS_DIR`` (and ``HF_HOME``, ``HF_HUB_OFFLINE``) are passed through from
  the front door's environment when set there, so every node looks in the same path; the
  models must be installed on every node (``python -m backend models download`` there).
- gsplat's CUDA JIT build cache: if a node's environment does not set
  ``TORCH_EXTENSIONS_DIR``, the task sets it to
  ``~/.cache/gen4d/torch_extensions/<hostname>``: one folder per machine, so nodes sharing
  a network home do not race on one build folder (workers on one machine share theirs;
  torch's build lock serializes them).

Test seam: ``run_job`` (an import path ``"module:function"``) replaces the job function in
the Ray workers (monkeypatching the front door's module does not reach them); the tests use
:mod:`tests.helpers.ray_fake_pipeline`.
"""

from __future__ import annotations

import collections
import importlib
import json
import logging
import os
import queue
import shutil
import socket
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Iterable, Optional

from backend.jobs import JobStore
from protocol import check_relative_name, make_header

log = logging.getLogger("gen4d.ray_executor")

Emit = Callable[[dict, list], None]
#: the job function the tasks run unless a test seam replaces it.
DEFAULT_RUN_JOB = "backend.pipeline.runner:run_job"
#: environment variables passed from the front door to every task when set there.
FORWARDED_ENV = ("GEN4D_MODELS_DIR", "HF_HOME", "HF_HUB_OFFLINE")
REPO_ROOT = Path(__file__).resolve().parents[1]


def _import_ray():
    try:
        import ray
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("the ray executor needs Ray: pip install 'ray==2.52.0' "
                          "(or serve with --executor local)") from e
    return ray


def _load_callable(path: str) -> Callable:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def _node_label() -> tuple[str, str]:
    """(label, full node id) of the node this code runs on (inside a Ray worker)."""
    import ray

    node_id = ray.get_runtime_context().get_node_id()
    ip = ray.util.get_node_ip_address()
    return f"{socket.gethostname()} ({ip}) node {node_id[:8]}", node_id


def _check_reachable(address: Optional[str], timeout_s: float = 5.0) -> None:
    """Fail fast when a ``host:port`` (or ``ray://host:port``) cluster address does not
    answer (Ray itself retries for minutes).

    Raises:
        ConnectionError: nothing accepts TCP connections at the address within ``timeout_s``.
    """
    if not address or address == "auto" or address == "local":
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise ConnectionError(f"no Ray cluster answers at {address} ({e.strerror or type(e).__name__}); "
                              f"start its head with 'ray start --head' or check --ray-address") from None


# -- the task (runs on a node) ------------------------------------------------------------


class _CancelBoard:
    """Actor body: the set of job ids whose cancel was requested (polled by the tasks)."""

    def __init__(self):
        self._ids: set[str] = set()

    def cancel(self, job_id: str) -> None:
        self._ids.add(job_id)

    def is_cancelled(self, job_id: str) -> bool:
        return job_id in self._ids

    def forget(self, job_id: str) -> None:
        self._ids.discard(job_id)


def _job_task(job_id: str, spec: dict, inputs: dict, run_job_path: str, board, cancel_poll_s: float,
              attempt: int):
    """The Ray task body (a streaming generator): run one job on this node.

    Yields dicts: ``{"kind": "started", "node", "node_id"}``, then ``progress`` (``fields``),
    ``preview`` (``png``) while the job runs, one ``file`` (``name``, ``data``) per result file
    of a completed job, and last ``outcome`` (``state`` ``completed`` with ``frame_count`` |
    ``cancelled`` | ``failed`` with ``code``/``message``). Never raises for a job failure:
    exceptions are classified here, and their text stays in this node's log.
    """
    from backend.errors import JobCancelled
    from backend.pipeline.context import JobContext
    from backend.worker import failure_outcome, progress_fields

    os.environ.setdefault("TORCH_EXTENSIONS_DIR",
                          str(Path.home() / ".cache" / "gen4d" / "torch_extensions" / socket.gethostname()))
    label, node_id = _node_label()
    yield {"kind": "started", "node": label, "node_id": node_id}
    work = Path(tempfile.mkdtemp(prefix=f"gen4d-{job_id}-"))
    try:
        in_dir, out_dir = work / "input", work / "result"
        out_dir.mkdir(parents=True)
        for name, data in inputs.items():
            p = in_dir / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        events: "queue.Queue" = queue.Queue()
        cancel = threading.Event()
        ctx = JobContext(on_progress=lambda pe: events.put({"kind": "progress", "fields": progress_fields(pe)}),
                         on_preview=lambda png: events.put({"kind": "preview", "png": bytes(png)}),
                         cancel_event=cancel, checkpoint_dir=None)
        outcome: dict = {}

        def body() -> None:
            try:
                ctx.check_cancelled()
                manifest = _load_callable(run_job_path)(spec, in_dir, out_dir, ctx)
                outcome.update(state="completed", frame_count=int(manifest["frame_count"]))
            except JobCancelled:
                outcome.update(state="cancelled")
            except BaseException as e:  # noqa: BLE001 - every failure must end the job as an outcome
                code, message = failure_outcome(e, job_id, where=f"on {label}",
                                                log_place="that node's Ray worker log")
                outcome.update(state="failed", code=code, message=message)
            finally:
                events.put(None)

        thread = threading.Thread(target=body, name=f"gen4d-job-{job_id}", daemon=True)
        thread.start()
        # The board is polled without ray.get/ray.wait: a task blocked in ray.get lends its
        # CPU back to Ray, which would start another job on this node meanwhile.
        next_poll, asked = time.monotonic() + cancel_poll_s, None
        while True:
            try:
                ev = events.get(timeout=min(0.2, cancel_poll_s))
            except queue.Empty:
                ev = False
            if ev is None:
                break
            if ev:
                yield ev
            if asked is not None and asked.done():
                try:
                    if asked.result():
                        cancel.set()
                except Exception:  # noqa: BLE001 - the board is unreachable: keep running, ask again
                    pass
                asked = None
            if asked is None and not cancel.is_set() and time.monotonic() >= next_poll:
                next_poll = time.monotonic() + cancel_poll_s
                asked = board.is_cancelled.remote(job_id).future()
        thread.join()
        if outcome.get("state") == "completed":
            for p in sorted(out_dir.rglob("*")):
                if p.is_file() and not p.name.endswith(".tmp"):
                    yield {"kind": "file", "name": p.relative_to(out_dir).as_posix(), "data": p.read_bytes()}
        yield {"kind": "outcome", **outcome}
    finally:
        shutil.rmtree(work, ignore_errors=True)


# -- the front door's side --------------------------------------------------------------


class RayExecutor:
    """The ``ray`` executor (:class:`backend.executors.Executor`): each job a Ray task.

    Args:
        store: the job store.
        emit: thread-safe ``emit(header, buffers)``.
        address: the Ray cluster (``"auto"``: the one started on this machine with ``ray
            start``; ``"ray://host:10001"`` or ``"host:6379"``; None: a new local Ray
            instance). When this process is already connected to Ray, that connection is used.
        run_job: import path ``"module:function"`` of the job function the tasks run (test
            seam; default :data:`DEFAULT_RUN_JOB`).
        gpus_per_job: ``"auto"`` (1 when the cluster has GPUs at start, else 0), or a number;
            a job without GPUs requests one CPU.
        max_attempts: how many times a job is submitted when its node or worker dies (≥ 1).
        env_vars: extra environment variables for the tasks (``runtime_env``).
        cancel_poll_s: seconds between a running task's checks of the cancel board.
        cancel_grace_s: seconds after a cancel before a task that has not ended is killed.

    Raises:
        ImportError: Ray is not installed (the message says how to install it).
        ValueError: ``max_attempts`` < 1.
    """

    def __init__(self, store: JobStore, emit: Emit, address: Optional[str] = "auto", *,
                 run_job: Optional[str] = None, gpus_per_job="auto", max_attempts: int = 3,
                 env_vars: Optional[dict] = None, cancel_poll_s: float = 0.5, cancel_grace_s: float = 10.0):
        self._ray = _import_ray()
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        self.store = store
        self.emit = emit
        self.address = address
        self.run_job = run_job or DEFAULT_RUN_JOB
        self.gpus_per_job = gpus_per_job
        self.max_attempts = int(max_attempts)
        self.cancel_poll_s = float(cancel_poll_s)
        self.cancel_grace_s = float(cancel_grace_s)
        env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
        env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + [p for p in os.environ.get("PYTHONPATH", "")
                                                                .split(os.pathsep) if p and p != "."])
        env.update(env_vars or {})
        self.env_vars = env
        self._lock = threading.Lock()
        self._waiting: "collections.OrderedDict[str, None]" = collections.OrderedDict()  # not started on a node
        self._refs: dict = {}  # job id -> the running attempt's ObjectRefGenerator
        self._cancelled: set[str] = set()  # running jobs whose cancel was requested
        self._threads: dict[str, threading.Thread] = {}
        self._stopping = False
        self._owns_ray = False
        self._board = None
        self._task = None
        self._gpus = 0.0

    # -- Executor --------------------------------------------------------------------

    def start(self, pending: Iterable[str] = ()) -> None:
        """Connect to the cluster (quietly: no dashboard, no worker logs on this process),
        create the cancel board and submit ``pending`` jobs in order.

        Raises:
            ConnectionError: no Ray cluster at ``address``.
        """
        ray = self._ray
        os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # quiet: no FutureWarning
        if not ray.is_initialized():
            _check_reachable(self.address)
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.WARNING, configure_logging=True)
            self._owns_ray = True
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = ray.get_runtime_context().get_node_id()
        self._board = ray.remote(num_cpus=0, max_restarts=-1)(_CancelBoard).options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=here, soft=True),
            runtime_env={"env_vars": self.env_vars}).remote()
        self._task = ray.remote(_job_task)
        if self.gpus_per_job == "auto":
            self._gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
        else:
            self._gpus = float(self.gpus_per_job)
        log.info("ray executor: cluster %s, %s per job", ray.cluster_resources(),
                 f"{self._gpus:g} GPU" if self._gpus else "1 CPU")
        for job_id in pending:
            self.enqueue(job_id)

    def enqueue(self, job_id: str) -> None:
        """Submit a ``queued`` job; a thread of its own follows it to its end."""
        with self._lock:
            if self._stopping:
                return
            self._waiting[job_id] = None
            t = threading.Thread(target=self._follow, args=(job_id,), name=f"gen4d-ray-{job_id}", daemon=True)
            self._threads[job_id] = t
        t.start()

    def queue_position(self, job_id: str) -> int:
        """How many jobs submitted before this one have not started on a node yet."""
        with self._lock:
            ids = list(self._waiting)
        return ids.index(job_id) if job_id in ids else 0

    def cancel(self, job_id: str) -> str:
        """Cancel a job: a queued one at once, a running one through the cancel board
        (killed ``cancel_grace_s`` later if still running).

        Returns:
            ``"cancelled"``, ``"requested"`` or ``"finished"`` (:meth:`Executor.cancel`).

        Raises:
            JobStoreError: ``unknown_job``.
        """
        ray = self._ray
        if self.store.transition(job_id, {"queued"}, "cancelled"):
            shutil.rmtree(self.store.checkpoint_dir(job_id), ignore_errors=True)
            with self._lock:
                self._waiting.pop(job_id, None)
                ref = self._refs.get(job_id)
            if ref is not None:
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001 - it ended meanwhile
                    pass
            log.info("job %s cancelled while queued", job_id)
            self.emit(make_header("cancelled", job_id=job_id), [])
            return "cancelled"
        if self.store.get(job_id)["state"] != "running":
            return "finished"
        with self._lock:
            self._cancelled.add(job_id)
        self._board.cancel.remote(job_id)
        timer = threading.Timer(self.cancel_grace_s, self._kill, args=(job_id,))
        timer.daemon = True
        timer.start()
        log.info("job %s: cancel requested", job_id)
        return "requested"

    def stop(self, timeout_s: float = 10.0) -> None:
        """Cancel every task (running jobs become ``failed``/``interrupted``, waiting ones stay
        ``queued`` for the next start), join the threads and disconnect from Ray if this
        executor connected."""
        with self._lock:
            self._stopping = True
            refs = list(self._refs.values())
            threads = list(self._threads.values())
        for ref in refs:
            try:
                self._ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - already over
                pass
        deadline = time.monotonic() + timeout_s
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in threads):
            log.warning("ray executor: some jobs did not stop within %.0f s", timeout_s)
        if self._owns_ray:
            self._ray.shutdown()

    # -- following one job ------------------------------------------------------------

    def _kill(self, job_id: str) -> None:
        with self._lock:
            ref = self._refs.get(job_id)
        if ref is not None and self.store.get(job_id)["state"] == "running":
            log.warning("job %s did not stop %.0f s after its cancel; killing its task", job_id, self.cancel_grace_s)
            self._ray.cancel(ref, force=True)

    def _finish(self, job_id: str, state: str, from_states=("running",), **fields) -> None:
        updates = {}
        if state == "failed":
            updates = {"error_code": fields["code"], "error_message": fields["message"]}
        elif state == "completed":
            updates = {"frame_count": fields["frame_count"], "files": fields["files"]}
        if self.store.transition(job_id, set(from_states), state, **updates):
            shutil.rmtree(self.store.checkpoint_dir(job_id), ignore_errors=True)
            self.emit(make_header(state, job_id=job_id, **fields), [])

    def _infeasible(self) -> Optional[str]:
        need = {"GPU": self._gpus} if self._gpus else {"CPU": 1.0}
        have = self._ray.cluster_resources()
        for k, v in need.items():
            if have.get(k, 0.0) < v:
                return (f"no node of the Ray cluster has {v:g} {k} for this job (the cluster has "
                        f"{have.get(k, 0.0):g}); add a node with one, or ask the administrator")
        return None

    def _follow(self, job_id: str) -> None:
        try:
            self._run(job_id)
        except Exception:  # noqa: BLE001 - the store itself failed: keep serving
            ref = uuid.uuid4().hex[:12]
            log.exception("job %s: ray executor error (ref %s)", job_id, ref)
            self._finish(job_id, "failed", from_states=("queued", "running"), code="internal_error",
                         message=f"the backend could not run this job; its log has the details under ref {ref}")
        finally:
            with self._lock:
                self._waiting.pop(job_id, None)
                self._refs.pop(job_id, None)
                self._threads.pop(job_id, None)
                self._cancelled.discard(job_id)

    def _run(self, job_id: str) -> None:
        ray = self._ray
        from ray import exceptions as rex

        if self.store.get(job_id)["state"] != "queued":
            return
        spec = self.store.spec(job_id)
        in_dir = self.store.input_dir(job_id)
        inputs = {p.relative_to(in_dir).as_posix(): p.read_bytes()
                  for p in sorted(in_dir.rglob("*")) if p.is_file()} if in_dir.is_dir() else {}
        resources = {"num_gpus": self._gpus, "num_cpus": 0} if self._gpus else {"num_cpus": 1}
        lost = None
        for attempt in range(1, self.max_attempts + 1):
            reason = self._infeasible()
            if reason:
                log.info("job %s: %s", job_id, reason)
                self._finish(job_id, "failed", from_states=("queued", "running"), code="no_resources",
                             message=reason)
                return
            with self._lock:
                if self._stopping:
                    break
                gen = self._task.options(num_returns="streaming", max_retries=0, retry_exceptions=False,
                                         runtime_env={"env_vars": self.env_vars}, **resources).remote(
                    job_id, spec, inputs, self.run_job, self._board, self.cancel_poll_s, attempt)
                self._refs[job_id] = gen
            if self.store.get(job_id)["state"] not in ("queued", "running"):  # cancelled meanwhile
                ray.cancel(gen, force=True)
                return
            try:
                if self._consume(job_id, gen, attempt):
                    return
            except rex.TaskCancelledError:
                pass
            except (rex.RayTaskError, rex.RaySystemError, rex.WorkerCrashedError, rex.NodeDiedError,
                    rex.ObjectLostError, rex.OwnerDiedError, rex.RayError) as e:
                if not isinstance(e, rex.TaskCancelledError):
                    lost = e
            state = self.store.get(job_id)["state"]
            with self._lock:
                stopping, cancelled = self._stopping, job_id in self._cancelled
            if state not in ("queued", "running"):
                return  # cancelled while queued
            if stopping:
                break
            if cancelled:
                self._finish(job_id, "cancelled", from_states=("running",))
                return
            if lost is None:  # cancelled by Ray without our asking
                lost = RuntimeError("task cancelled")
            log.warning("job %s: attempt %d of %d lost its node or worker (%s)", job_id, attempt,
                        self.max_attempts, type(lost).__name__)
            if attempt < self.max_attempts and state == "running":
                fields = {"stage": "queued", "step": 0, "total": 1, "loss": None, "eta_s": None,
                          "message": f"the node running this job was lost; retrying "
                                     f"(attempt {attempt + 1} of {self.max_attempts})"}
                self.store.set_progress(job_id, fields)
                self.emit(make_header("progress", job_id=job_id, **fields), [])
        if self._stopping:
            if self.store.get(job_id)["state"] == "running":
                log.info("job %s interrupted by shutdown", job_id)
                self._finish(job_id, "failed", code="interrupted",
                             message="the backend stopped while this job was running; resubmit it")
            return  # a job still waiting for a node stays queued for the next start
        self._finish(job_id, "failed", from_states=("queued", "running"), code="node_lost",
                     message=f"the cluster node running this job was lost {self.max_attempts} time(s) "
                             f"({type(lost).__name__}); resubmit it, or ask the administrator to check "
                             f"the cluster")

    def _consume(self, job_id: str, gen, attempt: int) -> bool:
        """Forward one attempt's events; True when the job ended (any terminal state)."""
        ray = self._ray
        stage = "queued"
        node = None
        rdir = self.store.result_dir(job_id)
        for ref in gen:
            ev = ray.get(ref)
            kind = ev["kind"]
            if kind == "started":
                node = ev["node"]
                with self._lock:
                    self._waiting.pop(job_id, None)
                if not self.store.transition(job_id, {"queued", "running"}, "running", node=node):
                    ray.cancel(gen, force=True)  # cancelled while it waited for its node
                    return True
                log.info("job %s started on %s (attempt %d)", job_id, node, attempt)
                self.emit(make_header("started", job_id=job_id, node=node), [])
                if rdir.exists():  # files of a lost attempt
                    shutil.rmtree(rdir, ignore_errors=True)
                rdir.mkdir(parents=True, exist_ok=True)
                node_info = {"node": node, "ray_node_id": ev["node_id"], "attempt": attempt}
            elif kind == "progress":
                stage = ev["fields"]["stage"]
                self.store.set_progress(job_id, ev["fields"])
                self.emit(make_header("progress", job_id=job_id, **ev["fields"]), [])
            elif kind == "preview":
                self.emit(make_header("preview", job_id=job_id, stage=stage), [ev["png"]])
            elif kind == "file":
                rel = check_relative_name(ev["name"])
                path = rdir / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(ev["data"])
            elif kind == "outcome":
                state = ev["state"]
                with self._lock:
                    stopping = self._stopping
                if state == "completed":
                    _record_node(rdir, node_info)
                    files = self.store.result_files(job_id)
                    log.info("job %s completed on %s: %d file(s)", job_id, node, len(files))
                    self._finish(job_id, "completed", frame_count=int(ev["frame_count"]), files=files)
                elif state == "cancelled" and stopping:
                    self._finish(job_id, "failed", code="interrupted",
                                 message="the backend stopped while this job was running; resubmit it")
                elif state == "cancelled":
                    log.info("job %s cancelled", job_id)
                    self._finish(job_id, "cancelled")
                else:
                    log.info("job %s failed [%s]: %s", job_id, ev["code"], ev["message"])
                    self._finish(job_id, "failed", code=ev["code"], message=ev["message"])
                self._board.forget.remote(job_id)
                return True
        return False  # the stream ended without an outcome: treated like a lost node


def _record_node(result_dir: Path, node_info: dict) -> None:
    """Write ``node_info`` to ``result/node.json`` and into the manifest's free-form
    ``stats["node"]`` (when the result has a manifest with a ``stats`` object or none),
    atomically."""
    (result_dir / "node.json").write_text(json.dumps(node_info))
    manifest_path = result_dir / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # no manifest (a test pipeline) or an unreadable one: node.json still says it
    if not isinstance(manifest, dict) or not isinstance(manifest.get("stats") or {}, dict):
        return
    manifest["stats"] = {**(manifest.get("stats") or {}), "node": node_info}
    tmp = manifest_path.with_name("manifest.json.tmp")
    tmp.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    os.replace(tmp, manifest_path)
