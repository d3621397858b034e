"""Exceptions shared by both ends of the wire.

Codes are stable snake_case strings: ``malformed``, ``bad_signature``, ``unknown_type``,
``invalid_field``, ``upload_too_large`` (:mod:`protocol.limits`), ``version_mismatch``,
``unknown_job``, ``not_completed``, ``internal_error``.
"""

from __future__ import annotations

from typing import Optional


class ProtocolError(Exception):
    """A message broke the wire contract (framing, signature, schema or version).

    Args:
        code: stable snake_case code, e.g. ``"bad_signature"``.
        message: human-readable explanation naming the problem.
        header: the parsed header when parsing got that far (lets a server answer
            with ``in_reply_to``), else None.
    """

    def __init__(self, code: str, message: str, header: Optional[dict] = None):
        super().__init__(f"[{code}] {message}")
        self.code = code
        self.message = message
        self.header = header


class BackendUnavailable(Exception):
    """The backend did not answer within the timeout (not running, wrong address, or hung)."""


class RemoteError(Exception):
    """The backend answered a request with an ``error`` message.

    Args:
        code: the error's code, e.g. ``"unknown_job"``.
        message: the error's human message.
    """

    def __init__(self, code: str, message: str):
        super().__init__(f"[{code}] {message}")
        self.code = code
        self.message = message


class InvalidOptionError(ValueError):
    """A job's options or preset are unknown, ill-typed or out of range.

    Raised by :func:`protocol.config.apply_options`, :mod:`protocol.presets` and
    :func:`protocol.job_spec.validate_job_spec`; every entry path (CLI, protocol submit,
    the add-on's preset mapping) reports it with its stable :attr:`code`:
    ``"invalid_option"`` (an option or spec key), ``"unknown_preset"`` or
    ``"unknown_job_type"``.

    Args:
        message: names the option and what is wrong with it.
        code: the stable code.
    """

    def __init__(self, message: str, code: str = "invalid_option"):
        super().__init__(f"[{code}] {message}")
        self.code = code
        self.message = message
