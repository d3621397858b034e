"""The executor boundary: what runs jobs behind the front door (issue 17).

The ZeroMQ server (:mod:`backend.server`) is the front door: protocol, authentication and
the job store. Behind it an *executor* runs the jobs and reports through ``emit``:

- ``local`` (the default; nothing else needed): :class:`backend.worker.Worker`, one job
  at a time on a thread of the server's process;
- ``ray``: :class:`backend.ray_executor.RayExecutor`, each job a Ray task that requests
  the resources its preset needs, so N GPUs (or CPU nodes) run N jobs at once across
  machines (``python -m backend serve --executor ray --ray-address auto``).

Every executor has the same methods (:class:`Executor`); the server never knows which one
runs.
"""

from __future__ import annotations

from typing import Callable, Iterable, Protocol

#: the executor names ``serve --executor`` accepts.
EXECUTORS = ("local", "ray")

Emit = Callable[[dict, list], None]


class Executor(Protocol):
    """What the server asks of whatever runs its jobs.

    An executor moves jobs through the store's states (``queued`` → ``running`` → a
    terminal state, recording ``node``), and hands every job event (``started``,
    ``progress``, ``preview``, terminal events; :mod:`protocol.messages`) to ``emit``, which
    is thread-safe; it never touches the server's socket.
    """

    def start(self, pending: Iterable[str] = ()) -> None:
        """Begin running: queue ``pending`` job ids (re-queued after a restart) first."""

    def enqueue(self, job_id: str) -> None:
        """Run a newly ``queued`` job when resources allow."""

    def cancel(self, job_id: str) -> str:
        """Cancel a job: ``"cancelled"`` (was queued; its event is emitted), ``"requested"``
        (running; it stops at its next check) or ``"finished"`` (already over).

        Raises:
            JobStoreError: ``unknown_job``.
        """

    def queue_position(self, job_id: str) -> int:
        """How many jobs start before this queued one."""

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop running jobs (they checkpoint and go back to ``queued`` where they can) and
        release the executor's threads and connections."""


def make_executor(kind: str, store, emit: Emit, **options) -> Executor:
    """Build the executor named ``kind`` (one of :data:`EXECUTORS`).

    Args:
        kind: ``"local"`` or ``"ray"``.
        store: the :class:`backend.jobs.JobStore`.
        emit: thread-safe ``emit(header, buffers)``.
        **options: the executor's own options (``ray``: ``address``).

    Raises:
        ValueError: an unknown kind, or options the kind does not take.
        ImportError: ``ray`` without the ``ray`` package installed (the message says how).
    """
    if kind == "local":
        if options:
            raise ValueError(f"the local executor takes no options, got {sorted(options)}")
        from backend.worker import Worker
        return Worker(store, emit)
    if kind == "ray":
        from backend.ray_executor import RayExecutor
        return RayExecutor(store, emit, **options)
    raise ValueError(f"unknown executor {kind!r}; choose one of {', '.join(EXECUTORS)}")
