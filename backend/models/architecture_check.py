"""Check that a model folder has the architecture gen4d's loaders expect, without loading it.

For every network component of a role's folder (:data:`COMPONENTS`):

1. ``config.json`` exists and names the class the loader builds (diffusers
   ``_class_name``, transformers ``architectures``; a transformers config naming no class
   passes this step);
2. the architecture-defining config keys equal the published architecture's
   (``backend.models.architectures.expected_config(role, component)`` unless ``expected``
   is given). The found values are read from the class built from the folder's config, so
   keys a config leaves at their defaults compare with the defaults the loader would use;
3. the weight tensors' shapes, read from the safetensors headers (``safe_open``; no tensor
   is read) or, for ``.bin`` files, from a memory-mapped ``torch.load``, equal the shapes of
   the module the config defines, built on the meta device (accelerate's
   ``init_empty_weights``; no memory is allocated). Missing, unexpected and mismatched
   keys are reported. The loaders' own tolerances apply: diffusers' renaming of
   pre-0.14 attention keys (``query`` → ``to_q`` ...), transformers' checkpoint key
   renaming (its conversion mapping: v5 reads v4 CLIP checkpoints), the classes'
   ``_keys_to_ignore_on_load_unexpected`` / ``_missing`` patterns, and checkpoint keys
   that name a non-persistent buffer (old CLIP ``position_ids``) are not errors.

Any problem raises ``JobError("model_invalid", ...)`` naming the role, the component, the
key, the value found and the value expected.
"""

from __future__ import annotations

import importlib
import json
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path

from backend.errors import JobError
from backend.models import download_state

_UNET = "diffusers:UNet2DConditionModel"
_VAE = "diffusers:AutoencoderKL"
_CLIP_TEXT = "transformers:CLIPTextModel"
_CLIP_VISION = "transformers:CLIPVisionModelWithProjection"

#: per role, the network components (sub-folder, ``""`` for the folder itself) and the
#: class ``"module:Class"`` its loader builds for each (see registry.ROLES' loaders).
COMPONENTS: dict[str, dict[str, str]] = {
    "text_to_image": {"unet": _UNET, "vae": _VAE, "text_encoder": _CLIP_TEXT},
    "image_to_video": {"unet": "diffusers:UNetSpatioTemporalConditionModel",
                       "vae": "diffusers:AutoencoderKLTemporalDecoder", "image_encoder": _CLIP_VISION},
    "multiview": {"unet": _UNET, "vae": _VAE, "text_encoder": _CLIP_TEXT, "vision_encoder": _CLIP_VISION},
    "sds_guidance": {"unet": _UNET, "vae": _VAE, "image_encoder": _CLIP_VISION,
                     "clip_camera_projection": "backend.models.zero123_guidance:CLIPCameraProjection"},
    "background_removal": {"": "transformers:CLIPSegForImageSegmentation"},
}

#: config keys that say nothing about the architecture (bookkeeping, dtype, runtime flags).
IGNORED_CONFIG_KEYS = frozenset({
    "architectures", "torch_dtype", "dtype", "transformers_version", "return_dict", "output_attentions",
    "output_hidden_states", "use_return_dict", "chunk_size_feed_forward", "tie_word_embeddings", "use_cache",
    "is_encoder_decoder", "id2label", "label2id", "problem_type", "tokenizer_class", "prefix", "task_specific_params",
    "finetuning_task", "torchscript", "pruned_heads",
})

#: at most this many key names per category in a message.
NAMES_SHOWN = 3


@dataclass
class ComponentReport:
    """What :func:`check_architecture` checked in one component.

    Attributes:
        component: sub-folder name (``""``: the folder itself).
        class_name: the class the loader builds.
        config_keys: how many config keys were compared with the published ones (0 when
            no published architecture was available).
        tensors: how many weight tensors' shapes were compared.
        weight_files: the weight files read (relative to the folder).
    """

    component: str
    class_name: str
    config_keys: int = 0
    tensors: int = 0
    weight_files: list[str] = field(default_factory=list)


def _import(spec: str):
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


#: components whose name in ``backend.models.architectures.PUBLISHED`` differs from the
#: sub-folder name used here (a model stored at the folder's root).
PUBLISHED_NAMES = {"": "model"}


def published_config(role: str, component: str) -> dict | None:
    """The published architecture's config keys for a component
    (``backend.models.architectures.expected_config``), or None when gen4d has none (that
    module absent, or the component not listed in it)."""
    try:
        from backend.models.architectures import expected_config
    except ImportError:
        return None
    try:
        return expected_config(role, PUBLISHED_NAMES.get(component, component))
    except (KeyError, JobError):
        return None


def _is_transformers(cls) -> bool:
    return any(base.__module__.startswith("transformers.") for base in cls.__mro__)


def build_empty(cls, config: dict):
    """``cls`` built from ``config`` on the meta device (no weights allocated), and its
    full config as a dict (defaults filled in, as the loader would see it)."""
    from accelerate import init_empty_weights

    if _is_transformers(cls):
        cfg = cls.config_class.from_dict(config)
        with init_empty_weights():
            model = cls(cfg)
        return model, model.config.to_dict()
    with init_empty_weights():
        model = cls.from_config(config)
    return model, dict(model.config)


def weight_files(folder: Path, names: list[str] | None = None) -> list[Path]:
    """The weight files the loader reads in one component folder.

    Args:
        folder: the component folder.
        names: the files a completed download recorded for this folder (relative to it);
            None: chosen from the folder's files as the loader without ``variant`` does
            (plain safetensors, else plain ``.bin``; :func:`backend.models.download.select_files`).
    """
    from backend.models.download import select_files, weight_kind
    from backend.models.hub import RemoteFile

    if names is None:
        listing = [RemoteFile(p.name, 0) for p in folder.iterdir() if p.is_file()]
        names = [f.name for f in select_files(listing, variant=None)]
    return [folder / n for n in names if weight_kind(n) and not n.endswith(".json")]


def tensor_shapes(files: list[Path]) -> dict[str, tuple[int, ...]]:
    """``{tensor name: shape}`` of weight files, without reading tensor data
    (safetensors headers; ``.bin`` through a memory-mapped ``torch.load``)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for path in files:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as fh:
                for key in fh.keys():
                    shapes[key] = tuple(fh.get_slice(key).get_shape())
        else:
            import torch

            state = torch.load(str(path), map_location="cpu", mmap=True, weights_only=True)
            shapes.update({k: tuple(v.shape) for k, v in state.items() if hasattr(v, "shape")})
    return shapes


def _norm(value):
    if isinstance(value, (list, tuple)):
        return [_norm(v) for v in value]
    if isinstance(value, dict):
        return {k: _norm(v) for k, v in value.items()}
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def compare_config(found: dict, expected: dict, prefix: str = "") -> list[tuple[str, object, object]]:
    """``(key, found, expected)`` for each architecture key of ``expected`` whose value
    differs in ``found`` (nested dicts, e.g. CLIPSeg's ``text_config``, key by key; keys
    starting with ``_`` and :data:`IGNORED_CONFIG_KEYS` are skipped; lists and tuples
    compare equal)."""
    out = []
    for key, want in expected.items():
        if key.startswith("_") or key in IGNORED_CONFIG_KEYS:
            continue
        have = found.get(key, "<absent>")
        if isinstance(want, dict) and isinstance(have, dict):
            out.extend(compare_config(have, want, f"{prefix}{key}."))
        elif _norm(have) != _norm(want):
            out.append((f"{prefix}{key}", have, want))
    return out


def _count_config_keys(expected: dict) -> int:
    n = 0
    for key, value in expected.items():
        if key.startswith("_") or key in IGNORED_CONFIG_KEYS:
            continue
        n += _count_config_keys(value) if isinstance(value, dict) else 1
    return n


def _transformers_key_names(model, found: dict, meta_state: dict) -> dict:
    """Checkpoint keys renamed as transformers renames them when loading (e.g. v5 drops
    the ``text_model.`` prefix of CLIPTextModel checkpoints saved by v4), through its own
    conversion mapping; keys a tensor-merging converter would claim keep their names.
    Unchanged when this transformers has no such mapping (v4)."""
    try:
        from transformers.conversion_mapping import get_model_conversion_mapping
        from transformers.core_model_loading import WeightRenaming, rename_source_key
    except ImportError:
        return found
    transforms = get_model_conversion_mapping(model)
    renamings = [t for t in transforms if isinstance(t, WeightRenaming)]
    converters = [t for t in transforms if not isinstance(t, WeightRenaming)]
    out = {}
    for key, shape in found.items():
        renamed, converter = rename_source_key(key, renamings, converters, model.base_model_prefix, meta_state)
        out[key if converter else renamed] = shape
    return out


def compare_shapes(model, cls, found: dict[str, tuple[int, ...]]):
    """Missing, unexpected and mismatched weight keys of ``found`` against ``model``'s
    state dict, with the loaders' tolerances (module docstring).

    Returns:
        ``(missing, unexpected, mismatched)``: two lists of names and a list of
        ``(name, found shape, expected shape)``.
    """
    meta_state = model.state_dict()
    want = {k: tuple(v.shape) for k, v in meta_state.items()}
    found = dict(found)
    if hasattr(model, "_fix_state_dict_keys_on_load"):  # diffusers: pre-0.14 attention key names
        model._fix_state_dict_keys_on_load(found)
    if _is_transformers(cls):
        found = _transformers_key_names(model, found, meta_state)
    prefix = getattr(cls, "base_model_prefix", "") or ""
    if prefix and found and not (set(found) & set(want)):  # transformers: checkpoint of the base model
        if all(k.startswith(prefix + ".") for k in found):
            found = {k[len(prefix) + 1:]: v for k, v in found.items()}
        else:
            found = {f"{prefix}.{k}": v for k, v in found.items()}
    buffers = {name for name, _ in model.named_buffers()}
    ignore_unexpected = list(getattr(cls, "_keys_to_ignore_on_load_unexpected", None) or [])
    ignore_missing = list(getattr(cls, "_keys_to_ignore_on_load_missing", None) or [])
    tied = getattr(model, "_tied_weights_keys", None) or []
    tied = list(tied.keys()) if isinstance(tied, dict) else list(tied)
    missing = sorted(k for k in want if k not in found and not any(re.search(p, k) for p in ignore_missing + tied))
    unexpected = sorted(k for k in found if k not in want and k not in buffers
                        and not any(re.search(p, k) for p in ignore_unexpected))
    mismatched = sorted((k, found[k], want[k]) for k in want if k in found and tuple(found[k]) != want[k])
    return missing, unexpected, mismatched


def _names(keys: list[str]) -> str:
    shown = ", ".join(keys[:NAMES_SHOWN])
    return shown + (f" and {len(keys) - NAMES_SHOWN} more" if len(keys) > NAMES_SHOWN else "")


def _fmt_shape(shape) -> str:
    return "[" + ", ".join(str(int(s)) for s in shape) + "]"


def check_component(role: str, folder: Path, component: str, class_spec: str, expected: dict | None,
                    recorded: list[str] | None) -> tuple[ComponentReport, list[str]]:
    """Check one component (steps 1-3 of the module docstring).

    Returns:
        Its report and the problems found, one line each (empty: it is fine).
    """
    where = f"{role}: {component or '.'}"
    sub = folder / component if component else folder
    cls_name = class_spec.split(":")[1]
    report = ComponentReport(component, cls_name)
    cfg_path = sub / "config.json"
    if not cfg_path.is_file():
        return report, [f"{where}/config.json is missing (the loader builds {cls_name} from it)"]
    try:
        config = json.loads(cfg_path.read_text())
    except ValueError as exc:
        return report, [f"{where}/config.json is not valid JSON ({exc})"]
    named = config.get("_class_name") or (config.get("architectures") or [None])[0]
    if named is not None and named != cls_name:
        return report, [f"{where}/config.json names the class {named}, the loader expects {cls_name}"]
    cls = _import(class_spec)
    try:
        model, full = build_empty(cls, config)
    except Exception as exc:  # a config the class rejects: report, do not crash
        return report, [f"{where}/config.json does not build {cls_name}: {type(exc).__name__}: {exc}"]
    problems = []
    if expected:
        report.config_keys = _count_config_keys(expected)
        for key, have, want in compare_config(full, expected):
            problems.append(f"{where}/config.json: {key} is {have!r}, the published architecture has {want!r}")
    files = weight_files(sub, recorded)
    report.weight_files = [posixpath.join(component, p.name) if component else p.name for p in files]
    if not files:
        return report, problems + [f"{where}: no weight file (*.safetensors / *.bin) next to config.json"]
    try:
        found = tensor_shapes(files)
    except Exception as exc:  # truncated or foreign file
        return report, problems + [f"{where}: cannot read the weight headers of {report.weight_files}: {exc}"]
    missing, unexpected, mismatched = compare_shapes(model, cls, found)
    report.tensors = len(found)
    for key, have, want in mismatched[:NAMES_SHOWN]:
        problems.append(f"{where}: tensor {key} has shape {_fmt_shape(have)}, the config implies {_fmt_shape(want)}")
    if len(mismatched) > NAMES_SHOWN:
        problems.append(f"{where}: {len(mismatched) - NAMES_SHOWN} more tensors have other shapes")
    if missing:
        problems.append(f"{where}: {len(missing)} tensor(s) the config implies are missing from the weights: "
                        f"{_names(missing)}")
    if unexpected:
        problems.append(f"{where}: {len(unexpected)} tensor(s) in the weights the config does not define: "
                        f"{_names(unexpected)}")
    return report, problems


def check_architecture(role: str, folder: Path, expected: dict[str, dict] | None = None) -> list[ComponentReport]:
    """Check ``folder`` against ``role``'s architecture (see the module docstring).

    Args:
        role: a role of :data:`COMPONENTS`.
        folder: the role's model folder.
        expected: ``{component: {config key: value}}`` to compare with; None: the published
            architecture (:func:`published_config`). Components missing from it are checked
            for class and shapes only.

    Returns:
        One :class:`ComponentReport` per component.

    Raises:
        JobError: ``model_invalid`` listing every problem (role, component, key, found and
            expected values); ``unknown_model_role`` for a role without a component table.
    """
    if role not in COMPONENTS:
        raise JobError("unknown_model_role", f"no architecture table for role {role!r}")
    folder = Path(folder)
    marker = download_state.read_marker(folder)
    recorded: dict[str, list[str]] = {}
    if marker:
        for f in marker.get("files", []):
            sub, base = posixpath.split(f["name"])
            recorded.setdefault(sub, []).append(base)
    reports, problems = [], []
    for component, class_spec in COMPONENTS[role].items():
        want = (expected or {}).get(component) if expected is not None else published_config(role, component)
        report, found = check_component(role, folder, component, class_spec, want,
                                        recorded.get(component) if marker else None)
        reports.append(report)
        problems.extend(found)
    if problems:
        raise JobError("model_invalid", f"{folder} does not have the architecture gen4d expects for {role}:\n- "
                                        + "\n- ".join(problems))
    return reports
