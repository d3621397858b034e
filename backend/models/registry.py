"""Model registry: which model fills each generation role, where its weights are, and
how to load it through the real diffusers / transformers code.

A role's *source* is, in order of precedence:

1. a per-job or command-line override (``{"multiview": "/path/or/hub-id"}``);
2. the folder ``<models dir>/<role>`` when it exists (``$GEN4D_MODELS_DIR``, default
   ``~/.cache/gen4d/models``): ``python -m backend models download`` writes there, and
   tests put tiny random-weight models there;
3. the role's default hub id, found in the Hugging Face cache.

Nothing is ever downloaded implicitly and nothing is faked: a model that is not on disk
raises :class:`ModelMissingError`, naming every missing model with its size and the
command that fetches it; a folder holding an unfinished download
(:mod:`backend.models.download_state`) raises ``JobError("model_incomplete")`` saying to
rerun that command. Loading always goes through ``from_pretrained(path,
local_files_only=True)`` of the role's class (with ``variant="fp16"`` when the download
fetched fp16-variant weights).
"""

from __future__ import annotations

import importlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from backend.errors import JobError
from backend.models import download_state
from backend.models.hub import is_offline

#: environment variable naming the models folder.
MODELS_DIR_ENV = "GEN4D_MODELS_DIR"


@dataclass(frozen=True)
class ModelRole:
    """One generation role and its default model.

    Attributes:
        name: role id (``text_to_image`` ...).
        default_source: Hugging Face hub id used when nothing overrides it.
        loader: ``"module:Class"`` whose ``from_pretrained`` loads the folder (diffusers /
            transformers classes, or a gen4d pipeline built on diffusers components).
        download_gb: approximate download size of the default model's weights (GB), as
            listed on its hub page; for the user's planning, not checked.
        vram_gb: approximate GPU memory to run it in fp16 (GB), from the model cards.
        license: the default weights' license.
        optional: the pipeline runs without it (with a weaker fallback it reports).
        purpose: one line for ``models list`` and error messages.
    """

    name: str
    default_source: str
    loader: str
    download_gb: float
    vram_gb: float
    license: str
    optional: bool
    purpose: str


ROLES: dict[str, ModelRole] = {r.name: r for r in (
    ModelRole("text_to_image", "stabilityai/sd-turbo", "diffusers:AutoPipelineForText2Image",
              2.6, 4.0, "Stability AI Community License", False,
              "prompt -> reference image (prompt jobs)"),
    ModelRole("image_to_video", "stabilityai/stable-video-diffusion-img2vid-xt",
              "diffusers:StableVideoDiffusionPipeline", 4.5, 12.0, "Stability AI Community License", False,
              "reference image -> monocular video (prompt and image jobs)"),
    ModelRole("multiview", "sudo-ai/zero123plus-v1.2", "backend.models.zero123plus:Zero123PlusPipeline",
              3.5, 6.0, "CC-BY-NC 4.0 (non-commercial)", False,
              "frame -> 6 views, Zero123++ v1.2 with STAG4D temporal anchoring (all generation jobs)"),
    ModelRole("sds_guidance", "ashawkey/zero123-xl-diffusers",
              "backend.models.zero123_guidance:Zero123Guidance",
              3.4, 6.0, "MIT (Zero123 weights: see the model card)", True,
              "camera-conditioned SDS guidance for views the generated ones miss (optional loss)"),
    ModelRole("background_removal", "CIDAS/clipseg-rd64-refined",
              "backend.models.background_removal:ClipSegBackgroundRemover", 0.6, 1.0,
              "see the model card", True,
              "text-prompted object masks for video without alpha (else OpenCV, plain backgrounds only)"),
)}


class ModelMissingError(JobError):
    """One or more models a job needs are not on disk (code ``model_missing``).

    Attributes:
        missing: the role names that are missing.
    """

    def __init__(self, missing: list[tuple[str, str]]):
        self.missing = [role for role, _ in missing]
        lines = []
        for role, source in missing:
            spec = ROLES[role]
            lines.append(f"- {role}: {source} (about {spec.download_gb:g} GB, {spec.license}) is not installed; "
                         f"get it with `python -m backend models download {role}` where the Hugging Face hub "
                         f"is reachable, or point the role at a local folder "
                         f"(`--model {role}=PATH`, or a copy in ${MODELS_DIR_ENV}/{role})")
        super().__init__("model_missing", "missing model(s):\n" + "\n".join(lines))


def models_dir() -> Path:
    """The folder holding per-role model copies (``$GEN4D_MODELS_DIR`` or
    ``~/.cache/gen4d/models``); not created here."""
    env = os.environ.get(MODELS_DIR_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "gen4d" / "models"


@dataclass(frozen=True)
class ResolvedModel:
    """Where a role's model comes from.

    Attributes:
        role: the role.
        source: the override, local folder or hub id as configured.
        kind: ``"local"`` (a folder) or ``"hub"`` (a hub id).
        path: the folder to load from, or None when the model is not on disk.
        incomplete: the folder holds a download that has not finished (``require`` and
            ``load`` refuse it with ``model_incomplete``).
    """

    role: str
    source: str
    kind: str
    path: Path | None
    incomplete: bool = False

    @property
    def present(self) -> bool:
        """Whether a folder is on disk for the role (possibly an unfinished download: see
        ``incomplete``)."""
        return self.path is not None


#: a Hugging Face hub id ``owner/name`` (the hub's own character set and length limit).
HUB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")


def is_hub_id(source: str) -> bool:
    """True if ``source`` has the form of a hub id ``owner/name`` (no ``..``)."""
    return isinstance(source, str) and bool(HUB_ID_RE.match(source)) and ".." not in source


def _looks_local(source: str) -> bool:
    """A folder path, not a hub id. ``owner/name`` is always a hub id, even when a folder
    of that relative name happens to exist (write ``./owner/name`` for the folder), so
    what a spec means never depends on the server's working folder."""
    return not is_hub_id(source)


def check_wire_models(models) -> None:
    """Check ``spec["models"]`` of a job that came over the wire: registry roles mapped to
    hub ids only. A client never names a server path (server-side folders stay in the
    server's own configuration: ``<models_dir>/<role>``); the check reads no file, so its
    answer says nothing about the server's disk.

    Args:
        models: the spec's ``models`` value (None or a dict).

    Raises:
        JobError: ``invalid_option`` naming the role or the source form.
    """
    if models is None:
        return
    if not isinstance(models, dict):
        raise JobError("invalid_option", "spec 'models' must be an object {role: hub id}")
    for role, source in models.items():
        if role not in ROLES:
            raise JobError("invalid_option", f"spec 'models': unknown model role {str(role)[:64]!r}; roles are "
                                             f"{sorted(ROLES)}")
        if not is_hub_id(source):
            raise JobError("invalid_option", f"spec 'models': {role} must name a hub id 'owner/name'; a submitted "
                                             f"job cannot name a folder on the backend (install it there with "
                                             f"`python -m backend models download {role}` or into "
                                             f"<models dir>/{role})")


def _hub_cache_path(repo_id: str) -> Path | None:
    """The cached snapshot folder of ``repo_id``, or None; never touches the network."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:  # pragma: no cover - huggingface_hub comes with diffusers
        return None
    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        return None


def resolve(role: str, overrides: dict[str, str] | None = None) -> ResolvedModel:
    """Where ``role``'s model is (see the module docstring for the precedence).

    Raises:
        JobError: ``unknown_model_role`` for a role not in :data:`ROLES`.
    """
    if role not in ROLES:
        raise JobError("unknown_model_role", f"unknown model role {role!r}; roles are {sorted(ROLES)}")
    source = (overrides or {}).get(role)
    if source is None:
        local = models_dir() / role
        if local.is_dir():
            return ResolvedModel(role, str(local), "local", local,
                                 download_state.folder_state(local) == "partial")
        source = ROLES[role].default_source
    if _looks_local(source):
        path = Path(source).expanduser()
        if not path.is_dir():
            return ResolvedModel(role, source, "local", None)
        return ResolvedModel(role, source, "local", path, download_state.folder_state(path) == "partial")
    return ResolvedModel(role, source, "hub", _hub_cache_path(source))


def require(roles: list[str], overrides: dict[str, str] | None = None) -> dict[str, ResolvedModel]:
    """Resolve every role a job needs, failing fast with all missing ones named.

    Returns:
        ``{role: ResolvedModel}``, every one present.

    Raises:
        ModelMissingError: naming each missing model (within milliseconds; no network).
        JobError: ``model_incomplete`` naming each folder whose download did not finish
            and the command that resumes it.
    """
    resolved = {role: resolve(role, overrides) for role in roles}
    incomplete = [r for r in resolved.values() if r.incomplete]
    if incomplete:
        raise JobError("model_incomplete", "incomplete model download(s):\n" + "\n".join(
            f"- {r.role}: the download into {r.path} did not finish (interrupted?); rerun "
            f"`python -m backend models download {r.role}` to complete it (complete files are kept)"
            for r in incomplete))
    missing = [(r.role, r.source) for r in resolved.values() if not r.present]
    if missing:
        raise ModelMissingError(missing)
    return resolved


def loader_class(role: str):
    """The class whose ``from_pretrained`` loads ``role``'s folder.

    Raises:
        JobError: ``missing_dependency`` when its package (diffusers/transformers) is not
            installed.
    """
    module_name, class_name = ROLES[role].loader.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise JobError("missing_dependency", f"role {role!r} needs the Python package {module_name!r} "
                                             f"({exc}); run scripts/setup.sh") from None
    return getattr(module, class_name)


def load(role: str, overrides: dict[str, str] | None = None, device: str = "cpu", dtype=None, **kwargs):
    """Load ``role``'s model from disk through its class's ``from_pretrained``.

    Args:
        role: a role of :data:`ROLES`.
        overrides: per-job sources (hub id or folder) by role.
        device: torch device to move the model to (``.to(device)``).
        dtype: ``torch_dtype`` passed to ``from_pretrained`` (None: as saved).
        **kwargs: passed on to ``from_pretrained``.

    Raises:
        ModelMissingError: the weights are not on disk.
        JobError: ``model_invalid`` when the folder does not load as the role's class.
    """
    resolved = require([role], overrides)[role]
    cls = loader_class(role)
    if dtype is not None:
        kwargs["torch_dtype"] = dtype
    variant = download_state.weight_variant(resolved.path)
    if variant is not None:
        kwargs.setdefault("variant", variant)
    try:
        model = cls.from_pretrained(str(resolved.path), local_files_only=True, **kwargs)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, json.JSONDecodeError) as exc:
        raise JobError("model_invalid", f"{role}: {resolved.source} ({resolved.path}) does not load as "
                                        f"{ROLES[role].loader}: {exc}") from None
    return model.to(device) if hasattr(model, "to") else model


def folder_size_gb(path: Path) -> float:
    """Total size of the files under ``path`` in GB (10⁹ bytes), links followed."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 1e9


def download(role: str, overrides: dict[str, str] | None = None, hub=None, on_file=None,
             progress=None, expected: dict[str, dict] | None = None) -> Path:
    """Fetch ``role``'s hub model into ``<models dir>/<role>`` file by file, resumable,
    and check its architecture (:func:`backend.models.download.download_repo`).

    Args:
        role: a role of :data:`ROLES`.
        overrides: per-role sources; a hub id here replaces the default repository.
        hub: the :class:`backend.models.hub.HubClient` (None: the Hugging Face hub).
        on_file: per-file progress callback (:class:`backend.models.download.FileEvent`).
        progress: tqdm class for each file's byte bar (None: huggingface_hub's own).
        expected: the architecture check's ``expected`` config keys by component (None:
            the published architecture).

    Raises:
        JobError: ``invalid_option`` for a local-folder source (nothing to download);
            ``offline`` when ``HF_HUB_OFFLINE`` is set; ``model_gated``,
            ``download_failed``, ``disk_full`` (checked before the first byte),
            ``model_invalid`` (the architecture check).
        KeyboardInterrupt: passed on; rerunning resumes.
    """
    from backend.models.download import download_repo

    resolve(role, overrides)  # validates the role
    source = (overrides or {}).get(role, ROLES[role].default_source)
    if _looks_local(source):
        raise JobError("invalid_option", f"{role} points at a local folder ({source}); nothing to download")
    return download_repo(role, source, models_dir() / role, hub, on_file=on_file, progress=progress,
                         expected=expected)
