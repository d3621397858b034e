"""The network side of ``python -m backend models download``, behind a two-method interface.

:class:`HubClient` is all the downloader needs from a model hub: the list of a repository's
files with their sizes and checksums, and fetching one file into a folder. The real client,
:class:`HfHubClient`, is ``huggingface_hub``: ``HfApi.model_info(files_metadata=True)``
for the list and ``hf_hub_download(local_dir=...)`` for each file, which draws a tqdm bar
per file and writes the file under a temporary name that is moved into place only when it
is complete. Tests pass a fake client that serves a local folder (tests/helpers/fake_hub.py).

Every hub failure the user can act on becomes a :class:`backend.errors.JobError`:
``offline`` (``HF_HUB_OFFLINE`` is set), ``model_gated`` (the license must be accepted on
the hub and the machine logged in), ``download_failed`` (not found, network, server),
``disk_full``. ``KeyboardInterrupt`` passes through untouched.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from backend.errors import JobError


@dataclass(frozen=True)
class RemoteFile:
    """One file of a hub repository.

    Attributes:
        name: path inside the repository, ``/``-separated (``unet/config.json``).
        size: size in bytes.
        sha256: hex SHA-256 of the content when the hub publishes it (Git LFS files, i.e.
            every weight file), else None (small files stored in git).
    """

    name: str
    size: int
    sha256: str | None = None


class HubClient(Protocol):
    """What the downloader needs from a model hub."""

    def list_files(self, repo: str) -> list[RemoteFile]:
        """All files of ``repo`` at its current revision.

        Raises:
            JobError: ``offline``, ``model_gated`` or ``download_failed``.
        """

    def revision(self, repo: str) -> str | None:
        """The commit the last :meth:`list_files` of ``repo`` saw (None when unknown)."""

    def fetch_file(self, repo: str, name: str, target_dir: Path, progress) -> Path:
        """Fetch ``name`` of ``repo`` to ``target_dir / name``, complete or not at all.

        Args:
            progress: a tqdm class drawing this file's byte progress bar (None: the
                client's default bar).

        Returns:
            The path of the complete file.

        Raises:
            JobError: ``model_gated``, ``download_failed`` or ``disk_full``.
            KeyboardInterrupt: passed through; no partial file is left at the target path.
        """


def is_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` is set to a true value (1, true, yes, on)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_error(repo: str, exc: BaseException, name: str | None = None) -> JobError:
    """The user-facing :class:`JobError` for a ``huggingface_hub`` / network exception.

    Args:
        repo: the repository id, named in the message.
        exc: what ``huggingface_hub`` raised.
        name: the file being fetched, if any.
    """
    from huggingface_hub.errors import (GatedRepoError, OfflineModeIsEnabled, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    what = f"{repo}/{name}" if name else repo
    if isinstance(exc, OfflineModeIsEnabled):
        return JobError("offline", f"HF_HUB_OFFLINE is set: cannot download {what}. Unset it on a machine with "
                                   f"internet access, or copy the model folder by hand.")
    if isinstance(exc, GatedRepoError):
        return JobError("model_gated", f"{repo} is a gated model: open https://huggingface.co/{repo}, accept its "
                                       f"license while logged in, then log this machine in with `hf auth login` "
                                       f"(or set HF_TOKEN) and rerun the download.")
    if isinstance(exc, RepositoryNotFoundError):
        return JobError("download_failed", f"{repo} was not found on the Hugging Face hub (or it is private: log "
                                           f"in with `hf auth login`).")
    if isinstance(exc, RevisionNotFoundError):
        return JobError("download_failed", f"{repo}: the revision was not found on the hub ({exc}).")
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return JobError("disk_full", f"the disk filled up while downloading {what}; free some space and rerun the "
                                     f"download (complete files are kept).")
    return JobError("download_failed", f"could not download {what}: {type(exc).__name__}: {exc}. Check the "
                                       f"connection to huggingface.co and rerun the download (complete files are "
                                       f"kept).")


class HfHubClient:
    """:class:`HubClient` over ``huggingface_hub`` (the Hugging Face hub).

    Files are pinned to the commit :meth:`list_files` saw, so one download never mixes two
    revisions. ``hf_hub_download`` keeps its own bookkeeping under
    ``<target>/.cache/huggingface``. With huggingface_hub ≥ 1.0 an interrupted file is
    discarded (it is written under a per-process temporary name), so a rerun restarts
    that file from its first byte; files already complete are not fetched again.

    Args:
        etag_timeout: seconds to wait for the hub's metadata answer per file.
        token: hub token (None: the logged-in one or ``HF_TOKEN``).
    """

    def __init__(self, etag_timeout: float = 10.0, token: str | None = None):
        self.etag_timeout = etag_timeout
        self.token = token
        self._revisions: dict[str, str | None] = {}

    def list_files(self, repo: str) -> list[RemoteFile]:
        """See :meth:`HubClient.list_files`."""
        if is_offline():
            raise JobError("offline", f"HF_HUB_OFFLINE is set: cannot download {repo}. Unset it on a machine "
                                      f"with internet access, or copy the model folder by hand.")
        from huggingface_hub import HfApi

        try:
            info = HfApi(token=self.token).model_info(repo, files_metadata=True)
        except JobError:
            raise
        except Exception as exc:  # network errors come in many classes; hub_error sorts them
            raise hub_error(repo, exc) from None
        self._revisions[repo] = info.sha
        return [RemoteFile(s.rfilename, int(s.size if s.size is not None else (s.lfs.size if s.lfs else 0)),
                           s.lfs.sha256 if s.lfs else None) for s in (info.siblings or [])]

    def revision(self, repo: str) -> str | None:
        """See :meth:`HubClient.revision`."""
        return self._revisions.get(repo)

    def fetch_file(self, repo: str, name: str, target_dir: Path, progress) -> Path:
        """See :meth:`HubClient.fetch_file`."""
        from huggingface_hub import hf_hub_download

        try:
            return Path(hf_hub_download(repo, name, revision=self._revisions.get(repo), local_dir=str(target_dir),
                                        etag_timeout=self.etag_timeout, token=self.token, tqdm_class=progress))
        except Exception as exc:  # see list_files
            raise hub_error(repo, exc, name) from None
