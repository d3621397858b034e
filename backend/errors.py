"""Errors that a job can end with, each with a stable machine-readable code.

The worker turns a :class:`JobError` into a ``failed`` event carrying ``code`` and the
human message; any other exception becomes ``internal_error`` with its text, never a
stack trace on the wire.
"""

from __future__ import annotations


class JobError(Exception):
    """A job failed for a reason the user can act on.

    Args:
        code: stable snake_case code, e.g. ``"bad_input"``, ``"out_of_memory"``.
        message: one or two sentences saying what is wrong and what to do.
    """

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:  # pragma: no cover - trivial
        return f"[{self.code}] {self.message}"


class BadInputError(JobError):
    """The uploaded input is malformed (missing image, bad camera JSON, not an image)."""

    def __init__(self, message: str):
        super().__init__("bad_input", message)


class JobCancelled(Exception):
    """Raised inside a job when its cancel flag is set; the worker reports ``cancelled``."""
