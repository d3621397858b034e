"""JSON as the wire and the job store accept it: finite numbers only, bounded size and depth.

Python's :func:`json.loads` accepts ``NaN``, ``Infinity`` and ``1e999`` (as ``inf``), and
recurses once per nesting level (a header nested about 1000 deep raises
:class:`RecursionError`, which is not a :class:`ValueError`). Either, let through, breaks
the server later: a non-finite number stored in a job cannot be encoded again
(``allow_nan=False``), and a deep object overflows whatever walks it next. Everything that
parses client JSON goes through :func:`loads_strict`; what the backend stores goes through
:func:`finite_or_none` first.
"""

from __future__ import annotations

import json
import math

__all__ = ["MAX_JSON_DEPTH", "MAX_HEADER_BYTES", "MAX_REPLY_HEADER_BYTES", "JSONRefused", "loads_strict", "json_depth", "finite_or_none"]

#: deepest nesting of objects and arrays accepted (a job spec needs 4).
MAX_JSON_DEPTH = 32
#: largest header accepted, in bytes (a job spec with a few hundred uploaded file names is
#: tens of kB; file bytes travel in buffers, not in the header).
MAX_HEADER_BYTES = 1 << 20
#: largest header a client accepts from the server (a ``jobs`` reply lists every job with
#: its spec, so it grows with the store).
MAX_REPLY_HEADER_BYTES = 64 << 20


class JSONRefused(ValueError):
    """Text that is not JSON, or JSON outside the limits of this module."""


def _refuse_constant(name: str):
    raise JSONRefused(f"non-finite number {name} is not allowed")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JSONRefused(f"number {text[:40]} is out of range (not a finite double)")
    return value


def json_depth(value) -> int:
    """Nesting depth of a decoded JSON value: 0 for a scalar, 1 for ``[]`` or ``{}``, … .
    Iterative, so any depth can be measured."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def loads_strict(data: bytes | str, max_bytes: int = MAX_HEADER_BYTES, max_depth: int = MAX_JSON_DEPTH):
    """Parse JSON text that must be finite, at most ``max_bytes`` long and ``max_depth`` deep.

    Args:
        data: UTF-8 bytes or text.
        max_bytes: the longest accepted text, in bytes (UTF-8).
        max_depth: the deepest accepted nesting (:func:`json_depth`).

    Returns:
        The decoded value.

    Raises:
        JSONRefused: not UTF-8 or not JSON; longer than ``max_bytes``; ``NaN``,
            ``Infinity`` or a number that overflows a double; nested deeper than
            ``max_depth`` (also where the parser itself would overflow the stack).
    """
    size = len(data) if isinstance(data, bytes) else len(data.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise JSONRefused(f"JSON text of {size} bytes is longer than the limit of {max_bytes}")
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except JSONRefused:
        raise
    except RecursionError:
        raise JSONRefused(f"JSON nested deeper than the limit of {max_depth}") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise JSONRefused(f"not valid UTF-8 JSON: {exc}") from None
    if json_depth(value) > max_depth:
        raise JSONRefused(f"JSON nested deeper than the limit of {max_depth}")
    return value


def finite_or_none(value):
    """``value`` with every non-finite float (NaN, ±inf) replaced by None, containers
    copied; everything else as it is. What the job store applies before it saves or after
    it loads, so a diverged loss can never make a job unencodable."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite_or_none(v) for v in value]
    return value
