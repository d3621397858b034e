"""``python -m backend models download``: fetch a role's hub repository file by file into
``<models dir>/<role>``, resumable, then check its architecture.

Which files (:func:`select_files`), the same rule for every role:

- documentation, images, licences and ``.gitattributes`` are skipped;
- weights other than ``*.safetensors`` / ``*.bin`` (``.ckpt``, ``.pt``, ``.pth``, Flax
  ``.msgpack``, TF ``.h5``, ONNX) are skipped: the loaders never read them;
- in a repository of component folders (``model_index.json`` at the root, or weights in
  sub-folders) the root-level single-file checkpoints are skipped
  (``sd_turbo.safetensors``, ``svd_xt.safetensors``, ``svd_xt_image_decoder.safetensors``):
  the loaders read the component folders;
- in each folder exactly one weight set is kept (one file, or the shards plus their
  index): safetensors before ``.bin``; the fp16 variant when *every* weight folder has
  one, else the plain weights everywhere. All or nothing, because ``from_pretrained``
  takes one ``variant`` for all components and diffusers does not fall back to plain
  files for a component that lacks the variant (checked with diffusers 0.42).

Per role, with the repositories' layouts as their model cards describe them:
``text_to_image`` (sd-turbo) and ``image_to_video`` (SVD-XT) publish fp16 variants next
to fp32 weights: the fp16 ones are fetched (the sizes in ``ROLES.download_gb`` are those),
and ``registry.load`` passes ``variant="fp16"``; ``multiview`` (Zero123++ v1.2),
``sds_guidance`` (zero123-xl-diffusers) and ``background_removal`` (CLIPSeg) publish one
weight set per folder, which is fetched (safetensors when both formats are there).

Resuming: a file whose size and SHA-256 (when the hub publishes one) match the listing is
not fetched again. Completeness is recorded by the markers of
:mod:`backend.models.download_state`.
"""

from __future__ import annotations

import errno
import hashlib
import posixpath
import re
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from backend.errors import JobError
from backend.models import download_state
from backend.models.hub import HfHubClient, HubClient, RemoteFile

#: the weight variant preferred in every folder where the repository has it.
PREFERRED_VARIANT = "fp16"
#: headroom kept free on the disk on top of the bytes still to fetch.
DISK_HEADROOM_BYTES = 200 * 1024 ** 2

_SKIPPED_SUFFIXES = (".md", ".png", ".jpg", ".jpeg", ".gif", ".webp", ".mp4", ".pdf", ".ckpt", ".pt", ".pth",
                     ".msgpack", ".h5", ".onnx", ".onnx_data", ".pb", ".tflite", ".gguf", ".ot")
_SKIPPED_NAMES = (".gitattributes", "LICENSE", "LICENSE.txt", "LICENSE.md")
_WEIGHT = re.compile(r"^[^.]+(?:\.(?P<var>[A-Za-z0-9_]+))?(?:-\d+-of-\d+)?\.(?P<fmt>safetensors|bin)$")
_INDEX = re.compile(r"^[^.]+(?:\.(?P<var>[A-Za-z0-9_]+))?\.(?P<fmt>safetensors|bin)\.index"
                    r"(?:\.(?P<var2>[A-Za-z0-9_]+))?\.json$")


def default_hub() -> HubClient:
    """The hub used when none is given: :class:`HfHubClient` (tests replace this)."""
    return HfHubClient()


def weight_kind(name: str) -> tuple[str, str | None] | None:
    """``(format, variant)`` of a weight or shard-index file name, else None.

    ``diffusion_pytorch_model.fp16.safetensors`` → ``("safetensors", "fp16")``;
    ``model-00001-of-00002.safetensors`` → ``("safetensors", None)``;
    ``diffusion_pytorch_model.safetensors.index.fp16.json`` → ``("safetensors", "fp16")``.
    """
    base = posixpath.basename(name)
    m = _WEIGHT.match(base)
    if m:
        return m["fmt"], m["var"]
    m = _INDEX.match(base)
    if m:
        return m["fmt"], m["var"] or m["var2"]
    return None


def select_files(files: list[RemoteFile], variant: str | None = PREFERRED_VARIANT) -> list[RemoteFile]:
    """The files a role's loader needs, by the rule of the module docstring.

    Args:
        files: the repository's listing.
        variant: the preferred weight variant, used when every weight folder has it
            (None: plain weights).

    Returns:
        The kept files, sorted by name.
    """
    components = any(f.name == "model_index.json" or ("/" in f.name and weight_kind(f.name)) for f in files)
    keep: list[RemoteFile] = []
    weights: dict[str, dict[tuple[str, str | None], list[RemoteFile]]] = defaultdict(lambda: defaultdict(list))
    for f in files:
        folder, base = posixpath.split(f.name)
        if base in _SKIPPED_NAMES or base.lower().endswith(_SKIPPED_SUFFIXES):
            continue
        kind = weight_kind(base)
        if kind is None:
            keep.append(f)
        elif not (components and folder == ""):
            weights[folder][kind].append(f)
    if variant is not None and not all(any(v == variant for _, v in groups) for groups in weights.values()):
        variant = None
    order = [("safetensors", variant), ("bin", variant), ("safetensors", None), ("bin", None)]
    order += sorted({k for groups in weights.values() for k in groups} - set(order), key=str)
    for groups in weights.values():
        chosen = next((k for k in order if k in groups), None)
        if chosen is not None:
            keep.extend(groups[chosen])
    return sorted(keep, key=lambda f: f.name)


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    """Hex SHA-256 of a file's content, read in 4 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_is_complete(path: Path, remote: RemoteFile) -> bool:
    """Whether ``path`` holds ``remote``: same size, and same SHA-256 when the hub gives one
    (every weight file; hashing runs at disk speed, a few seconds per GB)."""
    if not path.is_file() or path.stat().st_size != remote.size:
        return False
    return remote.sha256 is None or sha256_file(path) == remote.sha256


@dataclass(frozen=True)
class FileEvent:
    """Progress of one file of a download, passed to ``on_file``.

    Attributes:
        index: 1-based position among the selected files.
        count: number of selected files.
        name: the file's path in the repository.
        size: its size in bytes.
        status: ``"skip"`` (already complete), ``"fetch"`` (starting) or ``"done"``.
    """

    index: int
    count: int
    name: str
    size: int
    status: str


def _free_bytes(folder: Path) -> int:
    """Free bytes on the file system holding ``folder`` (its nearest existing parent)."""
    path = Path(folder).absolute()
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


def check_disk_space(folder: Path, needed: int) -> None:
    """Fail before fetching anything when ``folder``'s disk lacks ``needed`` bytes plus
    :data:`DISK_HEADROOM_BYTES`.

    Raises:
        JobError: ``disk_full``, naming both numbers in GB.
    """
    free = _free_bytes(folder)
    if needed + DISK_HEADROOM_BYTES > free:
        raise JobError("disk_full", f"not enough disk space in {folder}: the download needs "
                                    f"{needed / 1e9:.2f} GB more (+{DISK_HEADROOM_BYTES / 1e9:.1f} GB headroom), "
                                    f"{free / 1e9:.2f} GB are free. Free some space or set $GEN4D_MODELS_DIR to "
                                    f"another disk.")


def download_repo(role: str, repo: str, target: Path, hub: HubClient | None = None, *,
                  on_file: Callable[[FileEvent], None] | None = None, progress=None,
                  check: bool = True, expected: dict[str, dict] | None = None) -> Path:
    """Download the files ``role``'s loader needs from ``repo`` into ``target``.

    Steps: list the files; select them (:func:`select_files`); skip those already complete
    (:func:`file_is_complete`); check free disk space for the rest; write the partial
    marker; fetch the rest one by one through ``hub`` (each verified against its size and
    SHA-256); write the complete marker; then :func:`check_architecture`.

    Args:
        role: a role of ``registry.ROLES`` (selects the architecture check).
        repo: hub repository id.
        target: the folder to fill (created).
        hub: the hub client (None: :func:`default_hub`).
        on_file: called with a :class:`FileEvent` per file: ``skip``, or ``fetch`` then
            ``done``.
        progress: tqdm class passed to ``hub.fetch_file`` for each file's byte bar.
        check: run :func:`backend.models.architecture_check.check_architecture` at the end.
        expected: its ``expected`` (None: the published architecture).

    Returns:
        ``target``.

    Raises:
        JobError: ``offline``, ``model_gated``, ``download_failed`` (also when a fetched
            file does not match its listed size / SHA-256), ``disk_full``; ``model_invalid``
            from the architecture check (the complete marker is written before it: the
            download is complete, its content is wrong).
        KeyboardInterrupt: passed on; complete files and the partial marker stay, so a
            rerun resumes.
    """
    hub = hub or default_hub()
    target = Path(target)
    files = select_files(hub.list_files(repo))
    if not any(weight_kind(f.name) for f in files):
        raise JobError("download_failed", f"{repo} lists no weight files (*.safetensors / *.bin) that {role} "
                                          f"could load")
    revision = hub.revision(repo)
    old = download_state.read_marker(target) or {}
    todo = {f.name for f in files if not file_is_complete(target / f.name, f)}
    check_disk_space(target, sum(f.size for f in files if f.name in todo))
    variants = {weight_kind(f.name)[1] for f in files if weight_kind(f.name)}
    record = {"format": 1, "role": role, "repo": repo, "revision": revision,
              "variant": PREFERRED_VARIANT if PREFERRED_VARIANT in variants else None,
              "files": [{"name": f.name, "size": f.size, "sha256": f.sha256} for f in files]}
    target.mkdir(parents=True, exist_ok=True)
    if todo or old.get("revision") != revision or old.get("files") != record["files"]:
        download_state.write_json_atomic(target / download_state.PARTIAL_MARKER,
                                         {**record, "started": time.strftime("%Y-%m-%dT%H:%M:%S")})
        (target / download_state.MARKER).unlink(missing_ok=True)
    for i, f in enumerate(files, 1):
        if f.name not in todo:
            if on_file:
                on_file(FileEvent(i, len(files), f.name, f.size, "skip"))
            continue
        if on_file:
            on_file(FileEvent(i, len(files), f.name, f.size, "fetch"))
        try:
            path = Path(hub.fetch_file(repo, f.name, target, progress))
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise JobError("disk_full", f"the disk holding {target} filled up while fetching {f.name}; free "
                                            f"some space and rerun (complete files are kept)") from None
            raise
        if not file_is_complete(path, f):
            path.unlink(missing_ok=True)
            raise JobError("download_failed", f"{repo}/{f.name} arrived corrupted (size or SHA-256 differs from "
                                              f"the hub's listing); rerun the download")
        if on_file:
            on_file(FileEvent(i, len(files), f.name, f.size, "done"))
    if not (target / download_state.MARKER).is_file():
        download_state.write_json_atomic(target / download_state.MARKER,
                                         {**record, "completed": time.strftime("%Y-%m-%dT%H:%M:%S")})
    (target / download_state.PARTIAL_MARKER).unlink(missing_ok=True)
    if check:
        from backend.models.architecture_check import check_architecture

        check_architecture(role, target, expected)
    return target
