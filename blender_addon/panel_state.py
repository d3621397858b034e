"""What the sidebar panel shows (``panels.py`` draws it), changed only through named methods.

:data:`STATE` is the one :class:`PanelState` of the add-on. Only the main thread touches it:
the operators, the capture operator, and the future callbacks that ``session.py`` wires to
the backend connection (run by the timer's drain, see ``futures.py``). Plain Python (no
``bpy``); tests may replace :data:`STATE` with a new :class:`PanelState` to draw a given
situation, so readers always go through ``panel_state.STATE``.

Statuses (``PanelState.status``): ``idle``, ``capturing``, ``submitting``, ``queued``,
``running``, ``fetching`` (the result is downloading), ``ready`` (downloaded),
``completed`` (finished but the download failed), ``failed``, ``cancelled``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

__all__ = ["PanelState", "STATE", "BUSY"]

#: Statuses during which the panel locks its inputs and offers Cancel.
BUSY = ("capturing", "submitting", "queued", "running", "fetching")


@dataclass
class PanelState:
    """What the panel shows. Times in seconds; ``progress`` in [0, 1].

    Attributes:
        reachable: None before the first heartbeat, then whether the backend answered.
        rtt_s: the last heartbeat's round trip (s), or None.
        job_id: the job the panel follows ("" while none, or while submitting).
        status: see the module docstring.
        stage: the backend's current pipeline stage name.
        progress: the stage's fraction done, in [0, 1].
        eta_s: the backend's estimate of the seconds left, or None.
        loss: the latest training loss, or None.
        message: one line under the progress bar.
        last_error: the error line (an alert box); "" if none.
        result_dir: the downloaded result's folder ("" until ``ready``).
        preview_path: the latest preview PNG ("" if none).
        updated: ``time.time()`` of the last change the timer applied.
        last_ok: ``time.monotonic()`` of the last answered heartbeat, or None.
        unreachable_reason: why the last heartbeat failed.
        node: the machine running the job (the ``started`` event's ``node``; a cluster
            node's name under the Ray executor), "" if not said.
    """
    reachable: bool | None = None
    rtt_s: float | None = None
    job_id: str = ""
    status: str = "idle"
    stage: str = ""
    progress: float = 0.0
    eta_s: float | None = None
    loss: float | None = None
    message: str = ""
    last_error: str = ""
    result_dir: str = ""
    preview_path: str = ""
    updated: float = 0.0
    last_ok: float | None = None
    unreachable_reason: str = ""
    node: str = ""

    @property
    def busy(self) -> bool:
        """True while a capture or job is under way (inputs locked, Cancel offered)."""
        return self.status in BUSY

    # -- connection ---------------------------------------------------------------------

    def reachability(self, ok: bool, rtt_s: float | None, message: str = "") -> None:
        """A heartbeat's outcome; ``message`` says why it failed ("no answer" if empty)."""
        self.reachable, self.rtt_s = ok, rtt_s
        if ok:
            self.last_ok, self.unreachable_reason = time.monotonic(), ""
        else:
            self.unreachable_reason = message or "no answer"

    def disconnected(self) -> None:
        """The connection was closed on purpose (e.g. the local backend was stopped)."""
        self.reachable = None

    def error(self, message: str) -> None:
        """Show ``message`` in the error line (the status is unchanged)."""
        self.last_error = message

    def touch(self) -> None:
        """Note that something changed (``updated``)."""
        self.updated = time.time()

    # -- capture --------------------------------------------------------------------------

    def capturing(self) -> None:
        """A modal capture started."""
        self.status, self.progress, self.message = "capturing", 0.0, "capturing"

    def capture_progress(self, done: int, total: int) -> None:
        """``done`` of ``total`` images rendered (``total`` > 0)."""
        self.progress, self.message = done / total, f"capturing {done}/{total}"

    def capture_finished(self, message: str) -> None:
        """The capture ended (``message`` says where the footage went)."""
        self.status, self.message = "idle", message

    def capture_cancelled(self) -> None:
        """The user pressed Esc during a capture."""
        self.status, self.message = "idle", "capture cancelled"

    def capture_failed(self, message: str) -> None:
        """The capture failed; ``message`` goes to the error line."""
        self.status, self.last_error = "idle", message

    # -- a job --------------------------------------------------------------------------

    def submitting(self) -> None:
        """A new job is being uploaded: forget the previous job's display."""
        self.job_id, self.status, self.stage, self.progress, self.last_error = "", "submitting", "", 0.0, ""
        self.node = ""
        self.result_dir, self.message, self.preview_path = "", "uploading", ""

    def submit_failed(self, message: str) -> None:
        """The backend refused the job, or the upload failed."""
        self.status, self.last_error = "failed", message

    def accepted(self, job_id: str) -> None:
        """The backend stored the job as ``job_id``."""
        self.job_id, self.status, self.message = job_id, "queued", "queued"

    def reattaching(self, job_id: str) -> None:
        """Follow ``job_id`` again; the backend replays its state next."""
        self.job_id, self.status, self.stage, self.progress, self.eta_s = job_id, "queued", "", 0.0, None
        self.node = ""
        self.last_error, self.result_dir, self.preview_path, self.message = "", "", "", "reattaching"

    def reattach_failed(self, message: str) -> None:
        """The backend refused ``watch`` (e.g. an unknown id)."""
        self.status, self.last_error = "failed", message

    def queued(self, position: int | None = None) -> None:
        """The job waits in the backend's queue, ``position`` jobs ahead of it (None: unknown)."""
        if self.status in ("idle", "submitting", "queued"):
            self.status = "queued"
            if position is not None:
                self.message = "queued, next to run" if position == 0 else f"queued, {position} job(s) ahead"

    def started(self, node: str | None = None) -> None:
        """The job started running, on the machine ``node`` (None: not said)."""
        self.status, self.node = "running", node or ""
        if node:
            self.message = f"running on {node}"

    def progressed(self, stage: str, step: int, total: int, eta_s: float | None = None,
                   loss: float | None = None, message: str = "") -> None:
        """A progress report: ``step`` of ``total`` in ``stage`` (``total`` 0: unknown)."""
        self.status, self.stage = "running", stage
        self.progress = min(1.0, max(0.0, step / total)) if total else 0.0
        self.eta_s, self.loss, self.message = eta_s, loss, message or ""

    def previewed(self, path: str) -> None:
        """A new preview image was written to ``path``."""
        self.preview_path = path

    def completed(self) -> bool:
        """The job finished; returns True if its result should be downloaded now (False
        when a download is already under way or done)."""
        if self.status in ("fetching", "ready"):
            return False
        self.status, self.progress, self.message = "fetching", 1.0, "downloading result"
        return True

    def fetch_progress(self, index: int, count: int) -> None:
        """File ``index`` (from 0) of ``count`` downloaded."""
        self.message = f"downloading {index + 1}/{count}"

    def fetched(self, result_dir: str) -> None:
        """The result is in ``result_dir``, ready to import."""
        self.status, self.result_dir, self.message = "ready", result_dir, "result ready"

    def fetch_failed(self, message: str) -> None:
        """The download failed (the job stays completed on the backend)."""
        self.status, self.last_error = "completed", message

    def failed(self, code: str, message: str) -> None:
        """The job failed on the backend with error ``code``."""
        self.status, self.last_error = "failed", f"{code}: {message}"

    def cancelled(self) -> None:
        """The job was cancelled."""
        self.status, self.message = "cancelled", "cancelled"


#: The add-on's panel state (replaceable: always read it as ``panel_state.STATE``).
STATE = PanelState()
