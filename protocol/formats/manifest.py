"""The result manifest: ``manifest.json`` at the root of a gen4d result folder.

A result folder (what a backend job produces and the add-on imports) holds::

    manifest.json          this manifest
    frames/frame_0000.ply  one Gaussian PLY per output frame (:mod:`.ply`), N Gaussians
                           in the same order in every frame
    model.pt               the 4D model (backend only; ``model_file``)

``manifest.json`` is a JSON object (written with 2-space indentation) with, in order:
``format`` (``"gen4d-result"``), ``format_version`` (int, :data:`FORMAT_VERSION`),
``frame_count`` (T ≥ 1), ``fps``, ``times`` (T normalized times on the grid of
:mod:`.time_grid`), ``sh_degree``, ``gaussian_count`` (N), ``frame_files`` (T paths relative
to the folder, in frame order), ``model_file`` (relative path or null),
``image_formation`` (``"blender"`` or ``"3dgs"``: how the fit formed its images, see
:mod:`.image_formation`), ``standard_frame_files`` (T paths of the same frames refitted for
the standard 3DGS formation, for other 3DGS tools, or null), ``spec`` (the job spec) and ``stats`` (optimization statistics).

The frame PLYs hold the Gaussians as fitted, in the standard 3DGS property convention
(colours are sRGB-encoded SH values) whatever the formation: each Gaussian's own colour is
the same in both. A ``"blender"`` asset shows as fitted in Blender (the add-on's splat
material decodes the colour to linear light, and Cycles/Eevee composite in linear light);
a standard 3DGS viewer composites the same colours as sRGB values, so where splats overlap
semi-transparently it shows them somewhat darker than the fit (issue 15's two-splat case:
0.500 instead of 0.664). No per-Gaussian colour change can undo that difference, which
depends on the overlaps. So the backend also writes ``standard_frame_files``
(``frames_3dgs/frame_0000.ply`` …): the same Gaussians, in the same order and at the same
places, whose colours and opacities were refitted under ``"3dgs"``
(:mod:`backend.pipeline.reconstruct.refit_formation`); the files to hand to other 3DGS tools.
It is null for a ``"3dgs"`` asset (its ``frame_files`` already are standard) or when the
refit was turned off (``output.standard_ply_refit = 0``).

Reading is lenient where older writers were: ``frame_count`` defaults to the number of
``frame_files``, ``times`` to the time grid, ``fps`` to 24, ``sh_degree`` and
``gaussian_count`` to 0, ``model_file`` to null, ``image_formation`` to ``"3dgs"`` (what
results written before it was recorded were fitted with), ``standard_frame_files`` to
null, ``spec`` and ``stats`` to ``{}``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .image_formation import IMAGE_FORMATIONS, LEGACY_IMAGE_FORMATION
from .time_grid import frame_times

__all__ = ["RESULT_FORMAT", "FORMAT_VERSION", "SUPPORTED_FORMAT_VERSIONS", "MANIFEST_FILE", "MODEL_FILE",
           "Manifest", "ManifestError", "ManifestNotFoundError", "write_manifest", "read_manifest",
           "manifest_from_dict", "frame_file_name", "standard_frame_file_name"]

RESULT_FORMAT = "gen4d-result"
#: Version this code writes.
FORMAT_VERSION = 1
#: Versions this code reads.
SUPPORTED_FORMAT_VERSIONS = (1,)
MANIFEST_FILE = "manifest.json"
#: The backend's model file inside a result folder.
MODEL_FILE = "model.pt"
#: Default playback rate of manifests that record none (frames per second).
DEFAULT_FPS = 24.0


class ManifestError(ValueError):
    """A result manifest is missing, unreadable, of another format or version, or inconsistent."""


class ManifestNotFoundError(ManifestError, FileNotFoundError):
    """The folder has no ``manifest.json`` (also a :class:`FileNotFoundError`)."""


def frame_file_name(index: int) -> str:
    """Relative path of frame ``index`` in a result folder: ``frames/frame_0003.ply`` for 3."""
    return f"frames/frame_{index:04d}.ply"


def standard_frame_file_name(index: int) -> str:
    """Relative path of frame ``index`` refitted for the standard 3DGS formation:
    ``frames_3dgs/frame_0003.ply`` for 3 (``Manifest.standard_frame_files``)."""
    return f"frames_3dgs/frame_{index:04d}.ply"


@dataclass(kw_only=True)
class Manifest:
    """A result manifest (see the module docstring); fields in file order.

    Attributes:
        format: always :data:`RESULT_FORMAT`.
        format_version: the version it was written with.
        frame_count: T ≥ 1.
        fps: playback rate, frames per second (> 0).
        times: T normalized times in [0, 1]; None at construction means the time grid
            ``i / (T − 1)``.
        sh_degree: SH degree of the frames' colours (≥ 0).
        gaussian_count: N, Gaussians per frame (0: not recorded).
        frame_files: T POSIX paths relative to the result folder, in frame order.
        model_file: relative path of the 4D model, or None.
        image_formation: the image formation the asset was fitted for
            (:data:`~.image_formation.IMAGE_FORMATIONS`).
        standard_frame_files: T relative POSIX paths of the frames refitted for the standard
            3DGS formation (for other 3DGS tools), in frame order, or None (see the module
            docstring).
        spec: the job spec that produced the result (free-form).
        stats: optimization statistics (free-form).

    Raises:
        ManifestError: at construction, when a field is inconsistent (see :meth:`validate`).
    """

    format: str = RESULT_FORMAT
    format_version: int = FORMAT_VERSION
    frame_count: int
    fps: float = DEFAULT_FPS
    times: list[float] | None = None
    sh_degree: int = 0
    gaussian_count: int = 0
    frame_files: list[str]
    model_file: str | None = None
    image_formation: str = LEGACY_IMAGE_FORMATION
    standard_frame_files: list[str] | None = None
    spec: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.times is None and _is_int(self.frame_count) and self.frame_count >= 1:
            self.times = frame_times(self.frame_count)
        self.validate()

    def validate(self, where: str | None = None) -> None:
        """Check every field.

        Raises:
            ManifestError: another ``format``, an unsupported ``format_version``,
                ``frame_count`` < 1 or unequal to the number of ``frame_files`` or
                ``times``, times outside [0, 1], ``fps`` ≤ 0, negative counts, frame or
                model paths that are not relative POSIX paths inside the folder, an unknown
                ``image_formation``, ``standard_frame_files`` that are not null or T such
                paths, or
                ``spec``/``stats`` that are not objects. ``where`` (e.g. the file) prefixes
                the message.
        """
        def bad(msg: str):
            raise ManifestError(f"{where}: {msg}" if where else msg)

        if self.format != RESULT_FORMAT:
            bad(f"format is {self.format!r}, expected {RESULT_FORMAT!r}")
        if not _is_int(self.format_version) or self.format_version not in SUPPORTED_FORMAT_VERSIONS:
            bad(f"unsupported format_version {self.format_version!r} (this version of gen4d reads "
                f"{', '.join(map(str, SUPPORTED_FORMAT_VERSIONS))}); update gen4d")
        if not isinstance(self.frame_files, list) or not all(isinstance(f, str) for f in self.frame_files):
            bad("frame_files must be a list of relative paths")
        if not _is_int(self.frame_count) or self.frame_count < 1 or self.frame_count != len(self.frame_files):
            bad(f"frame_count {self.frame_count!r} does not match {len(self.frame_files)} frame_files")
        standard = self.standard_frame_files
        if standard is not None and (not isinstance(standard, list) or len(standard) != len(self.frame_files)
                                     or not all(isinstance(f, str) for f in standard)):
            bad(f"standard_frame_files must be null or a list of {len(self.frame_files)} relative paths")
        for name in self.frame_files + (standard or []) + ([self.model_file] if self.model_file is not None else []):
            if not _is_relative(name):
                bad(f"file {name!r} is not a relative path inside the result folder")
        if not isinstance(self.times, list) or len(self.times) != self.frame_count:
            bad(f"times must list {self.frame_count} numbers, got {self.times!r:.80}")
        if not all(_is_number(t) and 0.0 <= t <= 1.0 for t in self.times):
            bad("times must be numbers in [0, 1]")
        if not _is_number(self.fps) or not self.fps > 0:
            bad(f"fps must be a positive number, got {self.fps!r}")
        for name in ("sh_degree", "gaussian_count"):
            value = getattr(self, name)
            if not _is_int(value) or value < 0:
                bad(f"{name} must be an integer >= 0, got {value!r}")
        if self.image_formation not in IMAGE_FORMATIONS:
            bad(f"image_formation must be one of {list(IMAGE_FORMATIONS)}, got {self.image_formation!r}")
        for name in ("spec", "stats"):
            if not isinstance(getattr(self, name), dict):
                bad(f"{name} must be a JSON object")

    def to_dict(self) -> dict:
        """The JSON object, keys in file order (``times`` and ``fps`` as floats)."""
        return {"format": self.format, "format_version": self.format_version, "frame_count": self.frame_count,
                "fps": float(self.fps), "times": [float(t) for t in self.times], "sh_degree": self.sh_degree,
                "gaussian_count": self.gaussian_count, "frame_files": list(self.frame_files),
                "model_file": self.model_file, "image_formation": self.image_formation,
                "standard_frame_files": None if self.standard_frame_files is None else list(self.standard_frame_files),
                "spec": self.spec, "stats": self.stats}

    def frame_paths(self, folder: str | os.PathLike) -> list[Path]:
        """The frame files as paths under ``folder``, in frame order (not checked to exist)."""
        return [Path(folder) / f for f in self.frame_files]


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _is_relative(name) -> bool:
    if not isinstance(name, str) or not name or "\\" in name or "\x00" in name:
        return False
    p = PurePosixPath(name)
    return not p.is_absolute() and ".." not in p.parts and not (len(name) > 1 and name[1] == ":")


def manifest_from_dict(data, where: str = "manifest") -> Manifest:
    """Build and check a :class:`Manifest` from a decoded ``manifest.json`` object, filling
    the defaults older writers left out (see the module docstring).

    Raises:
        ManifestError: not an object, unknown format or version, wrong field types, or
            inconsistent counts; ``where`` prefixes the message.
    """
    if not isinstance(data, dict):
        raise ManifestError(f"{where}: not a JSON object")
    if data.get("format") != RESULT_FORMAT:
        raise ManifestError(f"{where}: format is {data.get('format')!r}, expected {RESULT_FORMAT!r}")
    version = data.get("format_version")
    if not _is_int(version) or version not in SUPPORTED_FORMAT_VERSIONS:
        raise ManifestError(f"{where}: unsupported format_version {version!r} (this version of gen4d reads "
                            f"{', '.join(map(str, SUPPORTED_FORMAT_VERSIONS))}); update gen4d")
    files = data.get("frame_files") or []
    count = data.get("frame_count", len(files) if isinstance(files, list) else 0)
    times = data.get("times") or None
    fps = data.get("fps", DEFAULT_FPS)
    try:
        return Manifest(format=RESULT_FORMAT, format_version=version, frame_count=count,
                        fps=float(fps) if _is_number(fps) else fps,
                        times=[float(t) if _is_number(t) else t for t in times] if isinstance(times, list) else times,
                        sh_degree=data.get("sh_degree", 0), gaussian_count=data.get("gaussian_count", 0),
                        frame_files=files, model_file=data.get("model_file"),
                        image_formation=data.get("image_formation", LEGACY_IMAGE_FORMATION),
                        standard_frame_files=data.get("standard_frame_files"),
                        spec=data.get("spec") or {},
                        stats=data.get("stats") or {})
    except ManifestError as exc:
        raise ManifestError(f"{where}: {exc}") from None


def write_manifest(folder: str | os.PathLike, manifest: Manifest) -> Path:
    """Write ``<folder>/manifest.json`` (2-space indented JSON, replaced atomically).

    Args:
        folder: the result folder (created if needed).
        manifest: the manifest; checked first.

    Returns:
        The path written.

    Raises:
        ManifestError: an inconsistent manifest (nothing is written).
        TypeError: ``spec`` or ``stats`` holding values JSON cannot encode.
    """
    if not isinstance(manifest, Manifest):
        raise TypeError(f"write_manifest needs a Manifest, got {type(manifest).__name__}")
    manifest.validate()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / MANIFEST_FILE
    text = json.dumps(manifest.to_dict(), indent=2)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_manifest(folder: str | os.PathLike) -> Manifest:
    """Read and check ``<folder>/manifest.json`` (any supported version; see the module docstring).

    Frame files are not checked to exist (use :meth:`Manifest.frame_paths`).

    Raises:
        ManifestNotFoundError: no ``manifest.json`` in ``folder`` (a ManifestError and a
            FileNotFoundError).
        ManifestError: unreadable or invalid JSON, another format, an unsupported
            version, or inconsistent fields; the message names the file.
    """
    path = Path(folder) / MANIFEST_FILE
    if not path.is_file():
        raise ManifestNotFoundError(f"{path} not found: not a gen4d result folder")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path}: unreadable manifest ({exc})") from None
    return manifest_from_dict(data, str(path))
