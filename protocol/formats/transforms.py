"""Multi-view footage in the NeRF-synthetic / D-NeRF transforms format.

A footage folder holds ``transforms_train.json`` (and optionally ``transforms_test.json``)
and the images they name. Each file is a JSON object with:

- ``camera_angle_x``: horizontal field of view in radians, in (0, π) (optional when every
  frame has its own intrinsics);
- ``frames``: a non-empty list of objects with ``file_path`` (relative to the folder, with
  or without an image extension, e.g. ``"./train/r_000"``; see :func:`resolve_image_path`),
  ``transform_matrix`` (the camera-to-world 4×4 in Blender's convention: camera looks
  down its −Z, +Y up, metres) and ``time`` (normalized clip time in [0, 1], default 0;
  see :mod:`.time_grid`); optionally the nerfstudio per-frame intrinsics ``fl_x fl_y cx
  cy w h`` (pixels) and any other keys (kept, ignored);
- any other top-level keys (kept, ignored), e.g. ``gen4d`` provenance, or top-level
  ``w h fl_x fl_y cx cy``.

:func:`parse_transforms` / :func:`read_transforms` validate with messages that name the
file and frame; :func:`write_transforms` validates the same way before writing, so what
it writes always reads back.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterable, Mapping

import numpy as np

from .media import IMAGE_EXTENSIONS

__all__ = ["TRANSFORMS_TRAIN", "TRANSFORMS_TEST", "INTRINSIC_KEYS", "TransformsError", "TransformsFrame",
           "Transforms", "transforms_file_name", "parse_transforms", "read_transforms", "write_transforms", "frame_record",
           "resolve_image_path"]

TRANSFORMS_TRAIN = "transforms_train.json"
TRANSFORMS_TEST = "transforms_test.json"
#: nerfstudio intrinsics keys (pixels), per frame or top-level.
INTRINSIC_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h")
_POSITIVE_KEYS = ("fl_x", "fl_y", "w", "h")


class TransformsError(ValueError):
    """A transforms file (or a ``file_path`` in it) is malformed; the message names the
    file and frame."""


def transforms_file_name(split: str) -> str:
    """``transforms_<split>.json`` (``"train"`` → :data:`TRANSFORMS_TRAIN`).

    Raises:
        ValueError: an empty split or one with a path separator.
    """
    if not isinstance(split, str) or not split or "/" in split or "\\" in split:
        raise ValueError(f"split must be a plain name such as 'train', got {split!r}")
    return f"transforms_{split}.json"


@dataclass(frozen=True)
class TransformsFrame:
    """One validated frame.

    Attributes:
        file_path: the image path as written (relative; see :func:`resolve_image_path`).
        c2w: ``[4, 4]`` float64 camera-to-world, Blender convention.
        time: normalized time in [0, 1].
        fields: the frame's JSON object as read (intrinsics ``fl_x`` … and other keys).
    """

    file_path: str
    c2w: np.ndarray
    time: float
    fields: dict = field(repr=False)


@dataclass(frozen=True)
class Transforms:
    """A validated transforms file.

    Attributes:
        camera_angle_x: horizontal FOV in radians, or None when absent.
        frames: the frames, in file order.
        document: the whole JSON object as read (top-level extras such as ``gen4d``).
    """

    camera_angle_x: float | None
    frames: list[TransformsFrame]
    document: dict = field(repr=False)

    @property
    def times(self) -> list[float]:
        """Every frame's time, in file order."""
        return [f.time for f in self.frames]


def _is_number(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def _float_if_number(x):
    """``float(x)`` for a (numpy) number, else ``x`` unchanged (left for the validation)."""
    return float(x) if _is_number(x) else x


def _check_intrinsics(obj: Mapping, where: str) -> None:
    for key in INTRINSIC_KEYS:
        if key not in obj:
            continue
        value = obj[key]
        if not _is_number(value) or not math.isfinite(value) or (key in _POSITIVE_KEYS and value <= 0):
            kind = "a positive number" if key in _POSITIVE_KEYS else "a finite number"
            raise TransformsError(f"{where}: {key} must be {kind}, got {value!r}")


def _parse_frame(frame, where: str, has_angle: bool) -> TransformsFrame:
    if not isinstance(frame, dict) or "file_path" not in frame or "transform_matrix" not in frame:
        raise TransformsError(f"{where}: needs 'file_path' and 'transform_matrix'")
    if not isinstance(frame["file_path"], str) or not frame["file_path"]:
        raise TransformsError(f"{where}: file_path must be a non-empty string, got {frame['file_path']!r}")
    try:
        c2w = np.asarray(frame["transform_matrix"], dtype=np.float64)
    except (TypeError, ValueError):
        raise TransformsError(f"{where}: transform_matrix is not numeric") from None
    if c2w.shape != (4, 4) or not np.all(np.isfinite(c2w)):
        raise TransformsError(f"{where}: transform_matrix must be a finite 4x4 matrix, got shape {c2w.shape}")
    if abs(np.linalg.det(c2w[:3, :3])) < 1e-6:
        raise TransformsError(f"{where}: transform_matrix rotation is singular")
    t = frame.get("time", 0.0)
    if not _is_number(t) or not 0.0 <= float(t) <= 1.0:
        raise TransformsError(f"{where}: time must be a number in [0, 1], got {t!r}")
    _check_intrinsics(frame, where)
    if "fl_x" not in frame and not has_angle:
        raise TransformsError(f"{where}: frame has no fl_x/fl_y and the file has no camera_angle_x")
    return TransformsFrame(file_path=frame["file_path"], c2w=c2w, time=float(t), fields=frame)


def parse_transforms(data, name: str = "transforms.json") -> Transforms:
    """Validate a decoded transforms object.

    Args:
        data: the decoded JSON.
        name: the file name used in error messages.

    Returns:
        :class:`Transforms`.

    Raises:
        TransformsError: not an object with a non-empty ``frames`` list; a
            ``camera_angle_x`` outside (0, π); a frame without a string ``file_path`` or
            without ``transform_matrix``; a matrix that is not a finite, non-singular 4×4;
            a ``time`` outside [0, 1]; an intrinsic that is not a finite number (``fl_x
            fl_y w h`` positive); a frame with neither ``fl_x`` nor a file
            ``camera_angle_x``.
    """
    if not isinstance(data, dict) or not isinstance(data.get("frames"), list) or not data["frames"]:
        raise TransformsError(f"{name} must be an object with a non-empty 'frames' list")
    angle_x = data.get("camera_angle_x")
    if angle_x is not None and not (_is_number(angle_x) and 0 < angle_x < math.pi):
        raise TransformsError(f"{name}: camera_angle_x must be radians in (0, pi), got {angle_x!r}")
    _check_intrinsics(data, name)
    frames = [_parse_frame(frame, f"{name} frame {i}", angle_x is not None) for i, frame in enumerate(data["frames"])]
    return Transforms(camera_angle_x=None if angle_x is None else float(angle_x), frames=frames, document=data)


def read_transforms(path: str | os.PathLike) -> Transforms:
    """Read and validate a transforms file (see :func:`parse_transforms`).

    Raises:
        FileNotFoundError: no such file (``"<name> is missing from the footage folder"``).
        TransformsError: invalid JSON or content; the message names the file.
        OSError: the file cannot be read for another reason.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path.name} is missing from the footage folder") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TransformsError(f"{path.name} is not valid JSON: {exc}") from None
    return parse_transforms(data, path.name)


def _matrix_rows(matrix) -> list[list[float]]:
    try:
        return np.asarray(matrix, dtype=np.float64).tolist()
    except (TypeError, ValueError):
        return matrix  # parse_transforms reports it


def frame_record(file_path: str, c2w, time: float | None = None, **fields) -> dict:
    """One frame for :func:`write_transforms`, so no writer spells the file's keys.

    Args:
        file_path: the image path relative to the footage folder, with or without its
            extension (e.g. ``"./train/r_000"``).
        c2w: ``[4, 4]`` Blender camera-to-world (any nested sequence or array).
        time: normalized time in [0, 1]; None leaves the frame without one.
        **fields: per-frame intrinsics (``fl_x fl_y cx cy w h``) or other keys such as
            ``camera_index`` / ``time_index``.

    Returns:
        ``{"file_path", "transform_matrix", "time"?, **fields}``; validated when written.
    """
    record = {"file_path": file_path, "transform_matrix": c2w}
    if time is not None:
        record["time"] = time
    record.update(fields)
    return record


def write_transforms(path: str | os.PathLike, frames: Iterable[Mapping], *, camera_angle_x: float | None = None,
                     intrinsics: Mapping | None = None, extra: Mapping | None = None) -> Path:
    """Write a transforms file (1-space indented JSON, replaced atomically).

    The object is ``{"camera_angle_x"?, **intrinsics, "frames": [...], **extra}``; each
    frame is ``{"file_path", "transform_matrix", "time"?, **other keys}`` in that order,
    the matrix as nested lists of floats (numpy arrays, ``mathutils.Matrix`` and nested
    sequences are accepted) and the time as a float.

    Args:
        path: the file, e.g. ``folder / TRANSFORMS_TRAIN`` (its folder must exist).
        frames: mappings with ``file_path`` (str, relative), ``transform_matrix`` (4×4
            Blender c2w), ``time`` (in [0, 1]) and optionally per-frame intrinsics
            (``fl_x fl_y cx cy w h``) or other keys such as ``camera_index``.
        camera_angle_x: horizontal FOV in radians (needed unless every frame has ``fl_x``).
        intrinsics: top-level nerfstudio intrinsics (``w h fl_x fl_y cx cy``), written
            before ``frames``.
        extra: other top-level keys (e.g. ``{"gen4d": {...}}``), written after ``frames``.

    Returns:
        ``Path(path)``.

    Raises:
        TransformsError: content the reader would reject (see :func:`parse_transforms`)
            or top-level keys given twice; nothing is written.
        TypeError: values JSON cannot encode.
    """
    path = Path(path)
    doc: dict = {}
    if camera_angle_x is not None:
        doc["camera_angle_x"] = _float_if_number(camera_angle_x)
    for key, value in dict(intrinsics or {}).items():
        if key not in INTRINSIC_KEYS:
            raise TransformsError(f"{path.name}: unknown intrinsics key {key!r}; use {INTRINSIC_KEYS}")
        doc[key] = value
    records = []
    for frame in frames:
        if not isinstance(frame, Mapping) or "file_path" not in frame or "transform_matrix" not in frame:
            raise TransformsError(f"{path.name} frame {len(records)}: needs 'file_path' and 'transform_matrix'")
        record = {"file_path": frame["file_path"], "transform_matrix": _matrix_rows(frame["transform_matrix"])}
        if "time" in frame:
            record["time"] = _float_if_number(frame["time"])
        record.update((k, v) for k, v in frame.items() if k not in record)
        records.append(record)
    doc["frames"] = records
    for key, value in dict(extra or {}).items():
        if key in doc:
            raise TransformsError(f"{path.name}: top-level key {key!r} given twice")
        doc[key] = value
    parse_transforms(doc, path.name)
    text = json.dumps(doc, indent=1)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def resolve_image_path(folder: str | os.PathLike, file_path: str) -> Path:
    """Find the image a frame's ``file_path`` names inside ``folder``.

    ``file_path`` is tried as written when it ends in an image extension
    (:data:`~protocol.formats.media.IMAGE_EXTENSIONS`, any case), then with each of those
    extensions appended, in order (``"./train/r_000"`` finds ``train/r_000.png`` or
    ``train/r_000.jpg`` …).

    Args:
        folder: the footage folder.
        file_path: the frame's ``file_path``.

    Returns:
        The existing image file (``folder / …``, not resolved).

    Raises:
        TransformsError: ``file_path`` is not a string, is absolute, or contains ``..``.
        FileNotFoundError: no such image (the message quotes ``file_path``).
    """
    if not isinstance(file_path, str) or not file_path:
        raise TransformsError(f"file_path must be a non-empty string, got {file_path!r}")
    rel = PurePosixPath(file_path.replace("\\", "/"))
    if rel.is_absolute() or ".." in rel.parts or (len(file_path) > 1 and file_path[1] == ":"):
        raise TransformsError(f"file_path {file_path!r} must be relative to the footage folder, without '..'")
    base = Path(folder) / Path(*rel.parts) if rel.parts else Path(folder)
    candidates = [base] if base.suffix.lower() in IMAGE_EXTENSIONS else []
    candidates += [base.with_name(base.name + ext) for ext in IMAGE_EXTENSIONS]
    for cand in candidates:
        if cand.is_file():
            return cand
    raise FileNotFoundError(f"image {file_path!r} named in the transforms file was not found in the footage")
