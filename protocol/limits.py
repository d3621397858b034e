"""Bounds on what a client may send and on the input a job may read: one table.

Every limit the backend enforces on untrusted input is declared here, with its unit and the
place that enforces it; option ranges (iterations, batch, Gaussian budget, image size …)
live beside the option definitions as ``min`` / ``max`` field metadata in
:mod:`protocol.config` and are listed by :func:`option_bounds`. The add-on reads the same
table, so a request it sends is never refused for a bound it could have checked.

=========================  ======================  ===========================================
limit                      value                   enforced by
=========================  ======================  ===========================================
``MESSAGE_PART_BYTES``     256 MiB                 the server's ROUTER socket (``zmq.MAXMSGSIZE``:
                                                   libzmq drops the peer's connection before the
                                                   part is buffered)
``UPLOAD_BYTES``           1 GiB                   ``submit``: all uploaded files together
``UPLOAD_FILES``           20,000                  ``submit``: number of uploaded files
``IMAGE_PIXELS``           4096 × 4096             ingest: each footage image and video frame,
                                                   read from the file header before decoding
``FOOTAGE_FRAMES``         20,000                  ingest: frames in a transforms file
``VIDEO_FRAMES``           10,000                  video ingest: frames decoded from a video
``SPEC_FRAMES``            10,000                  job spec ``frame_count`` / ``max_frames``
``SPEC_FPS``               1,000                   job spec ``fps`` / ``video_fps``
=========================  ======================  ===========================================

Pure standard library (it ships inside the Blender extension).
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass

#: largest single message part (one uploaded file, a header) the server accepts, bytes.
MESSAGE_PART_BYTES = 256 << 20
#: largest total of the files uploaded with one ``submit``, bytes.
UPLOAD_BYTES = 1 << 30
#: most files uploaded with one ``submit``.
UPLOAD_FILES = 20_000
#: most pixels (width × height) in one footage image or video frame.
IMAGE_PIXELS = 4096 * 4096
#: most frames in one transforms file.
FOOTAGE_FRAMES = 20_000
#: most frames decoded from one video.
VIDEO_FRAMES = 10_000
#: largest ``frame_count`` / ``max_frames`` in a job spec.
SPEC_FRAMES = 10_000
#: largest ``fps`` / ``video_fps`` in a job spec.
SPEC_FPS = 1000.0

def option_bounds(cls: type, prefix: str = "") -> dict[str, dict]:
    """The ``min`` / ``max`` / ``choices`` of every field of a (nested) config dataclass.

    Args:
        cls: a config dataclass, e.g. :class:`protocol.config.ReconstructConfig`.
        prefix: dotted path prepended to the names (used by the recursion).

    Returns:
        ``{dotted path: {"min": …, "max": …, "choices": …, "item_max": …}}`` (only the keys a
        field declares; ``item_*`` bound each item of a list; fields without bounds are left
        out).
    """
    out: dict[str, dict] = {}
    for f in fields(cls):
        path = f"{prefix}{f.name}"
        default = f.default_factory() if callable(f.default_factory) else f.default  # type: ignore[misc]
        if is_dataclass(default):
            out.update(option_bounds(type(default), path + "."))
            continue
        bounds = {k: f.metadata[k] for k in ("min", "max", "above", "below", "choices", "item_min", "item_max")
                  if k in f.metadata}
        if bounds:
            out[path] = bounds
    return out


def describe_bytes(n: float) -> str:
    """``n`` bytes as a short human string (``"256 MiB"``)."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} B"
