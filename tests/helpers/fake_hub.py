"""An offline stand-in for the Hugging Face hub (:class:`backend.models.hub.HubClient`):
serves the files of local folders as repositories, records what it is asked for, and can
simulate an interruption mid-file or a corrupted transfer."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from backend.errors import JobError
from backend.models.hub import RemoteFile

#: file suffixes the fake lists with a SHA-256, as the hub does for Git LFS files.
LFS_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".msgpack")


class FakeHub:
    """Serves ``repos`` (``{repo id: folder}``) like the hub.

    Args:
        repos: repository id → local folder whose files are the repository's.
        interrupt_after_bytes: raise ``KeyboardInterrupt`` once this many bytes have been
            written in this hub's lifetime (mid-file), leaving no file at the target path,
            like ``hf_hub_download``; None: never.
        corrupt: file names whose served bytes are altered (size kept).
        chunk: bytes written per progress update.

    Attributes:
        fetched: the file names :meth:`fetch_file` was called for, in order.
        bars: ``(name, total)`` of each progress bar created.
    """

    def __init__(self, repos: dict[str, Path], interrupt_after_bytes: int | None = None,
                 corrupt: tuple[str, ...] = (), chunk: int = 1024, revision: str = "0" * 40):
        self.repos = {k: Path(v) for k, v in repos.items()}
        self.interrupt_after_bytes = interrupt_after_bytes
        self.corrupt = set(corrupt)
        self.chunk = chunk
        self.rev = revision
        self.sent = 0
        self.fetched: list[str] = []
        self.bars: list[tuple[str, int]] = []

    def _root(self, repo: str) -> Path:
        if repo not in self.repos:
            raise JobError("download_failed", f"{repo} was not found on the (fake) hub")
        return self.repos[repo]

    def list_files(self, repo: str) -> list[RemoteFile]:
        root = self._root(repo)
        out = []
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            name = path.relative_to(root).as_posix()
            sha = hashlib.sha256(path.read_bytes()).hexdigest() if path.suffix in LFS_SUFFIXES else None
            out.append(RemoteFile(name, path.stat().st_size, sha))
        return out

    def revision(self, repo: str) -> str | None:
        return self.rev

    def fetch_file(self, repo: str, name: str, target_dir: Path, progress) -> Path:
        self.fetched.append(name)
        data = (self._root(repo) / name).read_bytes()
        if name in self.corrupt:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        dst = Path(target_dir) / name
        tmp = Path(target_dir) / ".cache" / "fake_hub" / (name.replace("/", "__") + ".incomplete")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        bar = progress(total=len(data), desc=name, unit="B", disable=True) if progress else None
        self.bars.append((name, len(data)))
        try:
            with open(tmp, "wb") as fh:
                for start in range(0, len(data), self.chunk):
                    block = data[start:start + self.chunk]
                    if self.interrupt_after_bytes is not None and self.sent + len(block) > self.interrupt_after_bytes:
                        fh.write(block[:self.interrupt_after_bytes - self.sent])
                        self.sent = self.interrupt_after_bytes
                        raise KeyboardInterrupt(f"simulated Ctrl-C in {name}")
                    fh.write(block)
                    self.sent += len(block)
                    if bar is not None:
                        bar.update(len(block))
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, dst)
        finally:
            tmp.unlink(missing_ok=True)
            if bar is not None:
                bar.close()
        return dst


def add_fp16_variants(folder: Path) -> None:
    """Next to every ``*.safetensors`` weight file under ``folder``, write its fp16
    variant (``x.fp16.safetensors``, floating tensors cast to fp16), as sd-turbo and SVD
    publish."""
    from safetensors.torch import load_file, save_file

    for path in sorted(Path(folder).rglob("*.safetensors")):
        if ".fp16." in path.name:
            continue
        state = load_file(str(path))
        half = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
        save_file(half, str(path.with_name(path.name.replace(".safetensors", ".fp16.safetensors"))),
                  metadata={"format": "pt"})


def add_hub_extras(folder: Path) -> None:
    """Files real hub repositories carry that the loaders never read: a README, an image,
    ``.gitattributes``, a root single-file checkpoint and a Flax copy of the UNet."""
    folder = Path(folder)
    (folder / "README.md").write_text("# tiny model card\n")
    (folder / ".gitattributes").write_text("*.safetensors filter=lfs\n")
    (folder / "teaser.png").write_bytes(b"\x89PNG not really")
    torch.save({"w": torch.zeros(4)}, folder / "tiny_single_file.ckpt")
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(4)}, str(folder / "tiny_single_file.safetensors"))
    if (folder / "unet").is_dir():
        (folder / "unet" / "diffusion_flax_model.msgpack").write_bytes(b"\x00" * 64)
