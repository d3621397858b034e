"""The add-on's job list on disk, so submitted jobs survive a Blender restart or crash.

One JSON file (``jobs.json``) in the extension's user folder
(``bpy.utils.extension_path_user``), or ``<config>/gen4d`` when the add-on runs outside
the extension system; both follow ``BLENDER_USER_RESOURCES``. It is written atomically
(temporary file + ``os.replace``) after every change, so a crash never leaves half a file.

A record is a dict::

    {"job_id": str, "job_type": str, "name": str, "address": str,
     "submitted_at": float (Unix s), "status": str, "result_dir": str, "message": str}

Only :func:`store_path` touches ``bpy``; the rest is plain Python (unit-testable).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

FILE_NAME = "jobs.json"
#: Oldest records are dropped beyond this many.
MAX_RECORDS = 200
FIELDS = ("job_id", "job_type", "name", "address", "submitted_at", "status", "result_dir", "message")


def store_path() -> Path:
    """Where the job list lives (the folder is created).

    Raises:
        OSError: the user folder cannot be created.
    """
    import bpy

    package = __package__ or "gen4d"
    try:
        folder = bpy.utils.extension_path_user(package, path="", create=True)
    except (ValueError, AttributeError):  # not installed as an extension (a plain checkout)
        folder = bpy.utils.user_resource("CONFIG", path="gen4d", create=True)
    return Path(folder) / FILE_NAME


def load(path: Path) -> tuple[list[dict], str]:
    """Read the job list.

    Returns:
        ``(records, warning)``: records newest first; ``warning`` is empty unless the file
        was unreadable, in which case it was moved aside to ``jobs.json.corrupt-<time>``
        (kept for the user) and the list starts empty.
    """
    path = Path(path)
    if not path.is_file():
        return [], ""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("jobs"), list):
            raise ValueError("no 'jobs' list")
        records = [{k: r.get(k, "") for k in FIELDS} for r in data["jobs"] if isinstance(r, dict) and r.get("job_id")]
        return records, ""
    except (OSError, ValueError) as exc:
        aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
        try:
            os.replace(path, aside)
        except OSError:
            aside = path
        return [], f"the gen4d job list {path} was unreadable ({exc}); kept as {aside.name}"


def save(path: Path, records: list[dict]) -> None:
    """Write ``records`` (newest first, at most :data:`MAX_RECORDS`) atomically.

    Raises:
        OSError: the folder is not writable.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps({"version": 1, "jobs": records[:MAX_RECORDS]}, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def upsert(records: list[dict], job_id: str, **fields) -> list[dict]:
    """Add a record for ``job_id`` (at the front) or update its fields; returns the new list.

    Raises:
        ValueError: an empty job id or an unknown field name.
    """
    if not job_id:
        raise ValueError("a job record needs a job id")
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown job record field(s) {sorted(unknown)}")
    for record in records:
        if record["job_id"] == job_id:
            record.update(fields)
            return records
    record = {k: "" for k in FIELDS}
    record.update(job_id=job_id, submitted_at=time.time(), **fields)
    return [record, *records]


def forget(records: list[dict], job_id: str) -> list[dict]:
    """The list without ``job_id`` (results already downloaded stay on disk)."""
    return [r for r in records if r["job_id"] != job_id]


def find(records: list[dict], job_id: str) -> dict | None:
    """The record of ``job_id``, or None."""
    return next((r for r in records if r["job_id"] == job_id), None)
