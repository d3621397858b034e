"""The job store: a SQLite database ``<data_dir>/jobs.sqlite3`` and one folder per job under
``<data_dir>/jobs/<job_id>/``.

The database (standard library :mod:`sqlite3`) holds one row per job: ``job_id``, ``seq``
(submission order), ``state``, ``record`` (the state dict of :data:`_STATE_KEYS` as JSON:
timestamps, error code/message, last progress, result file list, owner) and ``spec`` (the
submitted spec as JSON). A job folder holds the files::

    input/        the uploaded files (relative names, sanitized)
    result/       what the pipeline wrote (manifest.json, frames/frame_0000.ply, ...)
    checkpoint/   the running fit's checkpoints (:mod:`backend.pipeline.reconstruct.checkpoint`),
                  deleted by the worker when the job ends

Durability: WAL journal (readers never block the writer; a crash never leaves a torn
database) with ``synchronous=FULL``: every commit is fsynced, so a state change that was
reported to a client survives a power cut too, not only a killed process. State changes
are rare (a few per second at most: progress is rate-limited), so the fsync per commit
costs nothing measurable. One connection (``check_same_thread=False``) guarded by the
store's RLock; one transaction per state change.

States (:mod:`protocol.formats.job_states`): ``queued`` -> ``running`` -> ``completed`` |
``failed`` | ``cancelled`` (and ``queued`` -> ``cancelled``; ``running`` -> ``queued`` when
a job with a checkpoint is put back for a restart). The store survives a restart: on load,
a job left ``running`` whose ``checkpoint/`` holds a checkpoint goes back to ``queued`` (its
fit resumes from the checkpoint); one without becomes ``failed`` with code
``interrupted``. ``queued`` jobs, resumed ones included, are handed back in submission
order through :attr:`JobStore.pending` to be re-queued.

A job's state is saved with every non-finite number (a diverged loss) as null, and on load
non-finite numbers in stored records are replaced the same way, so every stored job can be
encoded in a reply; a row that cannot be read is skipped with a warning.

Migration: stores written before the database kept ``state.json`` and ``spec.json`` in each
job folder. On open, every folder that still has them is imported into the database in one
transaction, then the files are renamed ``state.json.migrated`` / ``spec.json.migrated``
so the next open does not import them again (a folder already in the database is only
renamed); a folder that cannot be read is skipped with a warning and left as it is.

All methods are thread-safe (the server loop and the worker thread both use the store).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Iterable

from protocol import ProtocolError, check_relative_name
from protocol.formats.job_states import JOB_STATES, TERMINAL_STATES
from protocol.strict_json import MAX_JSON_DEPTH, finite_or_none, json_depth

log = logging.getLogger("gen4d.jobs")

_JOB_ID_RE = re.compile(r"^[0-9a-f]{32}$")
_STATE_KEYS = ("job_id", "seq", "state", "created_at", "started_at", "finished_at", "error_code",
               "error_message", "progress", "frame_count", "files", "owner", "request_digest", "node")
DB_NAME = "jobs.sqlite3"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    seq    INTEGER NOT NULL,
    state  TEXT NOT NULL,
    record TEXT NOT NULL,
    spec   TEXT NOT NULL
);
"""
INTERRUPTED_MESSAGE = "the backend stopped while this job was running; resubmit it"


class JobStoreError(Exception):
    """A request about jobs cannot be served.

    Args:
        code: ``unknown_job`` or ``invalid_field``.
        message: human-readable explanation.
    """

    def __init__(self, code: str, message: str):
        super().__init__(f"[{code}] {message}")
        self.code = code
        self.message = message


class JobDatabaseError(OSError):
    """``<data_dir>/jobs.sqlite3`` exists but cannot be opened as a job database. An
    :class:`OSError`, so ``python -m backend serve`` reports it in one line and exits 2."""


def _natural_key(name: str):
    return [int(tok) if tok.isdigit() else tok for tok in re.split(r"(\d+)", name)]


def order_result_files(names: Iterable[str]) -> list[str]:
    """Order result files for chunked download: ``manifest.json``, PLYs in frame order, the rest.

    Args:
        names: relative POSIX names of the files in a result folder.

    Returns:
        The names in chunk order (PLY and other files in natural sort order).
    """
    names = list(names)
    first = [n for n in names if n == "manifest.json"]
    plys = sorted((n for n in names if n.lower().endswith(".ply")), key=_natural_key)
    rest = sorted((n for n in names if n != "manifest.json" and not n.lower().endswith(".ply")),
                  key=_natural_key)
    return first + plys + rest


class JobStore:
    """Persistent jobs: rows in ``<data_dir>/jobs.sqlite3``, files under ``<data_dir>/jobs``.

    Args:
        data_dir: the backend's data folder (created if needed).

    Attributes:
        root: ``<data_dir>/jobs``.
        db_path: ``<data_dir>/jobs.sqlite3``.
        pending: ids of jobs found ``queued`` on load (resumed ones included), in submission
            order; the server hands them to the worker.

    Raises:
        JobDatabaseError: the database file exists but is not a readable SQLite database.
    """

    def __init__(self, data_dir):
        self.root = Path(data_dir) / "jobs"
        self.root.mkdir(parents=True, exist_ok=True)
        self.db_path = Path(data_dir) / DB_NAME
        self._lock = threading.RLock()
        self._jobs: dict[str, dict] = {}
        self._specs: dict[str, dict] = {}
        self._next_seq = 1
        self.pending: list[str] = []
        try:
            self._db = sqlite3.connect(self.db_path, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self._load()
        except sqlite3.DatabaseError as e:
            raise JobDatabaseError(f"the job database {self.db_path} cannot be read ({e}); move it away to start "
                                   f"with an empty job list (the job folders under {self.root} stay)") from None

    def close(self) -> None:
        """Close the database connection (the store is unusable afterwards)."""
        with self._lock:
            self._db.close()

    # -- loading and recovery -------------------------------------------------------

    def _migrate_json_folders(self) -> None:
        """Import job folders of the JSON layout (state.json + spec.json) in one transaction."""
        found = []
        for d in sorted(self.root.iterdir()):
            if not d.is_dir() or not _JOB_ID_RE.match(d.name) or not (d / "state.json").exists():
                continue
            try:
                state = json.loads((d / "state.json").read_text(encoding="utf-8"))
                spec = json.loads((d / "spec.json").read_text(encoding="utf-8"))
                if not isinstance(state, dict) or not isinstance(spec, dict):
                    raise ValueError("state or spec is not a JSON object")
                if state.get("job_id") != d.name:
                    raise ValueError(f"job_id {state.get('job_id')!r} differs from the folder name")
                found.append((d, state, spec))
            except (OSError, ValueError, RecursionError) as e:
                log.warning("skipping unreadable job folder %s (not migrated): %s", d, e)
        if not found:
            return
        with self._db:  # one transaction
            self._db.execute("BEGIN IMMEDIATE")
            for d, state, spec in found:
                # stored as read; the checks and repairs of _load apply to every row alike
                self._db.execute("INSERT OR IGNORE INTO jobs (job_id, seq, state, record, spec) VALUES (?,?,?,?,?)",
                                 (d.name, state["seq"] if isinstance(state.get("seq"), int) else 0,
                                  str(state.get("state")), json.dumps(state), json.dumps(spec)))
        for d, _, _ in found:
            for name in ("state.json", "spec.json"):
                try:
                    os.replace(d / name, d / (name + ".migrated"))
                except OSError as e:
                    log.warning("job %s: could not rename %s after migrating it: %s", d.name, name, e)
        log.info("migrated %d job folder(s) from state.json/spec.json into %s", len(found), self.db_path)

    def _load(self) -> None:
        for tmp in self.root.glob(".tmp-*"):
            shutil.rmtree(tmp, ignore_errors=True)
        self._migrate_json_folders()
        for job_id, record, spec_text in self._db.execute("SELECT job_id, record, spec FROM jobs ORDER BY seq").fetchall():
            try:
                state, spec = json.loads(record), json.loads(spec_text)
                if not isinstance(state, dict) or not isinstance(spec, dict):
                    raise ValueError("state or spec is not a JSON object")
                if state.get("state") not in JOB_STATES or state.get("job_id") != job_id:
                    raise ValueError(f"bad state {state.get('state')!r}")
                if not _JOB_ID_RE.match(str(job_id)):
                    raise ValueError("bad job id")
                if max(json_depth(state), json_depth(spec)) > MAX_JSON_DEPTH:
                    raise ValueError(f"nested deeper than {MAX_JSON_DEPTH}")
                int(state.get("seq") or 0)
            except (TypeError, ValueError, RecursionError) as e:
                log.warning("skipping unreadable job record %r: %s", job_id, e)
                continue
            # repair what a reply could not encode (NaN or infinity written by older versions)
            clean_state, clean_spec = finite_or_none(state), finite_or_none(spec)
            repaired_spec = json.dumps(clean_spec) != json.dumps(spec)
            repaired_state = json.dumps(clean_state) != json.dumps(state)
            state = {k: clean_state.get(k) for k in _STATE_KEYS}
            self._jobs[job_id], self._specs[job_id] = state, clean_spec
            if repaired_spec:
                log.warning("job %s: non-finite numbers in its spec replaced by null", job_id)
                self._save(job_id, spec=True)
            if repaired_state:
                log.warning("job %s: non-finite numbers in its state replaced by null", job_id)
                self._save(job_id)
            self._next_seq = max(self._next_seq, int(state.get("seq") or 0) + 1)
            if state["state"] == "running":
                if self.has_checkpoint(job_id):
                    state.update(state="queued", error_code=None, error_message=None, finished_at=None)
                    self._save(job_id)
                    log.info("job %s was running when the backend stopped: re-queued to resume from its "
                             "checkpoint", job_id)
                else:
                    state.update(state="failed", finished_at=time.time(), error_code="interrupted",
                                 error_message=INTERRUPTED_MESSAGE)
                    self._save(job_id)
                    log.info("job %s was running when the backend stopped: marked failed (interrupted)", job_id)
        self.pending = [j["job_id"] for j in sorted(self._jobs.values(), key=lambda j: j["seq"] or 0)
                        if j["state"] == "queued"]
        if self._jobs:
            log.info("loaded %d job(s), %d to re-queue", len(self._jobs), len(self.pending))

    def _save(self, job_id: str, spec: bool = False) -> None:
        """Write the job's row (one transaction); with ``spec`` its spec too."""
        self._jobs[job_id] = job = finite_or_none(self._jobs[job_id])  # a NaN loss must not make the job unencodable
        with self._db:
            if spec:
                self._db.execute("UPDATE jobs SET spec=? WHERE job_id=?",
                                 (json.dumps(self._specs[job_id], allow_nan=False), job_id))
            self._db.execute("UPDATE jobs SET seq=?, state=?, record=? WHERE job_id=?",
                             (int(job["seq"] or 0), job["state"], json.dumps(job, allow_nan=False), job_id))

    # -- paths ----------------------------------------------------------------------

    def job_dir(self, job_id: str) -> Path:
        """Return ``<data_dir>/jobs/<job_id>``. Raises :class:`JobStoreError` (``unknown_job``)."""
        self._check(job_id)
        return self.root / job_id

    def input_dir(self, job_id: str) -> Path:
        """Return the job's ``input/`` folder. Raises :class:`JobStoreError` (``unknown_job``)."""
        return self.job_dir(job_id) / "input"

    def result_dir(self, job_id: str) -> Path:
        """Return the job's ``result/`` folder. Raises :class:`JobStoreError` (``unknown_job``)."""
        return self.job_dir(job_id) / "result"

    def checkpoint_dir(self, job_id: str) -> Path:
        """Return the job's ``checkpoint/`` folder (may not exist). Raises :class:`JobStoreError` (``unknown_job``)."""
        return self.job_dir(job_id) / "checkpoint"

    def has_checkpoint(self, job_id: str) -> bool:
        """Whether the job's ``checkpoint/`` holds a fit checkpoint (``*.pt``)."""
        d = self.root / job_id / "checkpoint"
        return d.is_dir() and any(d.glob("*.pt"))

    def _check(self, job_id) -> None:
        if not isinstance(job_id, str) or not _JOB_ID_RE.match(job_id) or job_id not in self._jobs:
            raise JobStoreError("unknown_job", f"no job with id {job_id!r}")

    # -- creating and reading -------------------------------------------------------

    def create(self, spec: dict, files: Iterable[tuple[str, bytes]], owner: str | None = None,
               request_digest: str | None = None) -> dict:
        """Store a new ``queued`` job with its uploaded files.

        Args:
            spec: the job spec (JSON object).
            files: ``(relative name, bytes)`` pairs.
            owner: the user who submitted it (:mod:`backend.users`); None for jobs of a
                store used without users (the CLI, older records), which only an admin sees.
            request_digest: the signature of the ``submit`` that made it, kept so that a
                restarted server still refuses that request replayed
                (:meth:`backend.replay.ReplayGuard.remember`).

        Returns:
            A copy of the new job's state dict (with ``spec``).

        Raises:
            JobStoreError: ``invalid_field`` for an absolute / ``..`` / duplicate name.
        """
        files = list(files)
        seen = set()
        for name, _ in files:
            try:
                rel = check_relative_name(name)
            except ProtocolError as e:
                raise JobStoreError("invalid_field", e.message) from None
            if rel.as_posix() in seen:
                raise JobStoreError("invalid_field", f"file name {name!r} appears twice")
            seen.add(rel.as_posix())
        job_id = uuid.uuid4().hex
        tmp = self.root / f".tmp-{job_id}"
        try:
            (tmp / "input").mkdir(parents=True)
            (tmp / "result").mkdir()
            for name, data in files:
                path = tmp / "input" / check_relative_name(name)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
            spec_text = json.dumps(finite_or_none(spec), allow_nan=False)
            with self._lock:
                state = {k: None for k in _STATE_KEYS}
                state.update(job_id=job_id, seq=self._next_seq, state="queued", created_at=time.time(), owner=owner,
                             request_digest=request_digest)
                self._next_seq += 1
                os.replace(tmp, self.root / job_id)  # a folder without a row (crash here) is ignored
                with self._db:
                    self._db.execute("INSERT INTO jobs (job_id, seq, state, record, spec) VALUES (?,?,?,?,?)",
                                     (job_id, state["seq"], "queued", json.dumps(state, allow_nan=False), spec_text))
                self._jobs[job_id] = state
                self._specs[job_id] = json.loads(spec_text)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            if job_id not in self._jobs:
                shutil.rmtree(self.root / job_id, ignore_errors=True)
            raise
        log.info("job %s queued (%d file(s), spec %s)", job_id, len(files), json.dumps(spec)[:200])
        return self.get(job_id)

    def get(self, job_id: str) -> dict:
        """Return a copy of a job's state dict plus its ``spec``.

        Raises:
            JobStoreError: ``unknown_job``.
        """
        with self._lock:
            self._check(job_id)
            return {**json.loads(json.dumps(self._jobs[job_id])), "spec": self._specs[job_id]}

    def spec(self, job_id: str) -> dict:
        """Return the job's spec. Raises :class:`JobStoreError` (``unknown_job``)."""
        with self._lock:
            self._check(job_id)
            return self._specs[job_id]

    def list(self) -> list[dict]:
        """Return copies of all jobs' state dicts (with ``spec``), oldest first."""
        with self._lock:
            ids = sorted(self._jobs, key=lambda j: self._jobs[j]["seq"] or 0)
            return [self.get(j) for j in ids]

    def queue_position(self, job_id: str) -> int:
        """Return how many jobs run before this queued one (the running one included)."""
        with self._lock:
            seq = self._jobs[job_id]["seq"]
            return sum(1 for j in self._jobs.values()
                       if j["state"] == "running" or (j["state"] == "queued" and j["seq"] < seq))

    # -- changing -------------------------------------------------------------------

    def transition(self, job_id: str, from_states: Iterable[str], to_state: str, **updates) -> bool:
        """Atomically move a job to ``to_state`` if it is in one of ``from_states``.

        Args:
            job_id: the job.
            from_states: states the move is allowed from.
            to_state: the new state.
            **updates: other state fields to set (e.g. ``error_code``).

        Returns:
            True if the job moved, False if it was in another state.

        Raises:
            JobStoreError: ``unknown_job``.
        """
        assert to_state in JOB_STATES
        with self._lock:
            self._check(job_id)
            job = self._jobs[job_id]
            if job["state"] not in set(from_states):
                return False
            now = time.time()
            job["state"] = to_state
            if to_state == "running":
                job["started_at"] = now
            if to_state in TERMINAL_STATES:
                job["finished_at"] = now
            job.update({k: v for k, v in updates.items() if k in _STATE_KEYS})
            self._save(job_id)
            return True

    def set_progress(self, job_id: str, progress: dict) -> None:
        """Record the last progress fields (stage, step, total, loss, eta_s, message)."""
        with self._lock:
            self._check(job_id)
            self._jobs[job_id]["progress"] = dict(progress)
            self._save(job_id)

    def result_files(self, job_id: str) -> list[str]:
        """List the files under the job's ``result/`` in chunk order (see :func:`order_result_files`)."""
        rdir = self.result_dir(job_id)
        names = [p.relative_to(rdir).as_posix() for p in rdir.rglob("*")
                 if p.is_file() and not p.name.endswith(".tmp")]
        return order_result_files(names)
