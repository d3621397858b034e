"""STAG4D's training-free temporal anchor, as a diffusers attention processor.

STAG4D (Sec. 3.2, "temporal anchor"): generating the multi-view images of frame k with
the same multi-view diffusion model as frame 0 gives views that drift between frames. Run
frame 0 first and cache, for every self-attention layer and every denoising step of the
main pass (both CFG halves), the tokens that feed that layer's K and V projections. For
frame k, at the same layer and step, replace them by

    kv_input = (1 − w) · current + w · anchor          (w = 0.5 in STAG4D)

Queries are computed from the current tokens. ``w = 0`` is exactly the unanchored model;
``w = 1`` makes frame k's anchored K/V tokens equal frame 0's.

Which tokens are anchored (reference: ``zeng-yifei/STAG4D`` at 9aa21c9,
``guidance/zero123pp/pipeline.py:98-113``). The K/V input of a main-pass self-attention
layer is ``[multi-view tokens (L), reference tokens (L_ref)]`` (Zero123++'s reference
attention appends the condition image's tokens). STAG4D mixes the first
``int(9600 / (C // 320)**2)`` tokens of that concatenation, C being the layer's width:
9600 = 120 × 80 is the latent token count of the 960 × 640 grid and 320 the UNet's first
block width, so in the down and up blocks this is exactly the L multi-view tokens. In the
**mid block** (C = 1280, L = 150 at 15 × 10) the rule gives 600, more than its L
multi-view tokens plus its reference tokens (64 for v1.2's 512-px condition image, a
64 × 64 latent), so STAG4D also averages the *reference* tokens with frame 0's. gen4d reproduces this quirk by default
(:attr:`TemporalAnchor.stag4d_token_rule`), generalized to any grid and UNet as
``min(L + L_ref, latent_tokens // (C // C0)**2)`` with ``latent_tokens`` the grid's latent
token count and C0 = ``block_out_channels[0]`` (identical to STAG4D's constants at
960 × 640); set it to False to anchor the multi-view tokens only (L) in every layer.

The same processor also implements Zero123++'s reference attention (Shi et al. 2023,
"Zero123++", Sec. 3: the condition image's latent, noised to the current timestep, runs
through the UNet first; each self-attention layer records its input, and the main pass
appends those tokens to its K/V input).

Every step is anchored (STAG4D anchors all of them; there is no cut). The cache holds one
tensor per (layer, step) in ``cache_dtype`` (fp16 by default) in host memory up to
``max_memory_bytes`` (default: half the memory available when recording starts), and
spills the rest to files in ``spill_dir`` (default: a temporary folder), so GPU memory is
never used for it. For Zero123++ v1.2 (960 × 640, CFG) one step is about 108 MB in fp16,
75 steps about 8.1 GB. :attr:`TemporalAnchor.cache_bytes`,
:attr:`TemporalAnchor.spilled_bytes`, :attr:`TemporalAnchor.recorded_steps` and
:attr:`TemporalAnchor.applied_steps` report what was kept and used; :meth:`clear` frees
memory and files. (STAG4D keeps the whole concatenation, reference tokens included, in
host memory at the pipeline's dtype: about twice this.)
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

#: modes of :class:`TemporalAnchor`.
ANCHOR_MODES = ("off", "record", "apply")
#: fraction of the host's available memory the cache may hold before spilling to disk.
MEMORY_FRACTION = 0.5


def stag4d_anchored_tokens(channels: int, n_total: int, latent_tokens: int, base_channels: int) -> int:
    """How many leading K/V tokens STAG4D's rule anchors in a layer of width ``channels``.

    STAG4D (``guidance/zero123pp/pipeline.py:110``) uses ``int(9600 / (C // 320)**2)``,
    i.e. ``latent_tokens // (C // base_channels)**2`` at 960 × 640 for Zero123++'s UNet;
    the count is clipped to the ``n_total`` tokens there are (as slicing does).

    Args:
        channels: the layer's token width C.
        n_total: tokens in the K/V input (multi-view + reference).
        latent_tokens: ``h · w`` of the UNet's input latent.
        base_channels: the UNet's ``block_out_channels[0]``.

    Raises:
        ValueError: ``channels`` smaller than ``base_channels`` (the rule divides by 0).
    """
    ratio = channels // base_channels
    if ratio < 1:
        raise ValueError(f"layer width {channels} is below the UNet's first block width {base_channels}")
    return min(n_total, int(latent_tokens / ratio ** 2))


@dataclass
class TemporalAnchor:
    """Shared state of every :class:`AnchoredAttnProcessor` of one UNet.

    Attributes:
        weight: w of the module docstring, in [0, 1].
        mode: ``"off"`` (no anchoring), ``"record"`` (frame 0: cache the K/V inputs) or
            ``"apply"`` (frame k: mix the cached ones in).
        step: index of the current denoising step; the pipeline sets it before each UNet
            call.
        stag4d_token_rule: anchor the leading tokens STAG4D's rule names (the mid block's
            reference tokens included; see the module docstring); False: the multi-view
            tokens only.
        latent_tokens: ``h · w`` of the current latent grid, set by the pipeline (needed by
            the STAG4D rule).
        base_channels: the UNet's ``block_out_channels[0]``, set by the pipeline.
        cache_device: where in-memory cached tensors live (``"cpu"`` by default).
        cache_dtype: their dtype (``torch.float16`` by default).
        cache: ``{(layer name, step): Tensor [B, n, C] or Path}`` (a Path: spilled to disk).
        max_memory_bytes: bytes kept in memory before entries spill to ``spill_dir``; None:
            :data:`MEMORY_FRACTION` of the host's available memory when recording starts.
        spill_dir: folder for spilled entries (created on first use, deleted by
            :meth:`clear`); None: a new temporary folder.

    Raises:
        ValueError: (at construction or :meth:`set_mode`) weight outside [0, 1] or an
            unknown mode.
    """

    weight: float = 0.5
    mode: str = "off"
    step: int = 0
    stag4d_token_rule: bool = True
    latent_tokens: int | None = None
    base_channels: int | None = None
    cache_device: str | torch.device = "cpu"
    cache_dtype: torch.dtype = torch.float16
    cache: dict = field(default_factory=dict)
    max_memory_bytes: int | None = None
    spill_dir: str | Path | None = None

    def __post_init__(self):
        self._memory_bytes = 0
        self._spilled_bytes = 0
        self._memory_limit = 0
        self._spill_path: Path | None = None
        self._own_spill_path = False
        self.applied_steps: set[int] = set()
        if not 0.0 <= self.weight <= 1.0:
            raise ValueError(f"anchor weight must be in [0, 1], got {self.weight}")
        self.set_mode(self.mode)

    def set_mode(self, mode: str) -> None:
        """Switch mode; ``"record"`` empties the cache first and fixes the memory limit,
        ``"apply"`` resets :attr:`applied_steps`."""
        if mode not in ANCHOR_MODES:
            raise ValueError(f"anchor mode must be one of {ANCHOR_MODES}, got {mode!r}")
        if mode == "record":
            self.clear()
            if self.max_memory_bytes is not None:
                self._memory_limit = int(self.max_memory_bytes)
            else:
                import psutil

                self._memory_limit = int(MEMORY_FRACTION * psutil.virtual_memory().available)
        if mode == "apply":
            self.applied_steps = set()
        self.mode = mode

    @property
    def cache_bytes(self) -> int:
        """Bytes of the whole cache, in memory and on disk."""
        return self._memory_bytes + self._spilled_bytes

    @property
    def spilled_bytes(self) -> int:
        """Bytes of the cache held in files under the spill folder."""
        return self._spilled_bytes

    @property
    def recorded_steps(self) -> int:
        """Number of distinct denoising steps with cached entries."""
        return len({step for _, step in self.cache})

    def clear(self) -> None:
        """Free every cached tensor and delete spilled files (and a temporary spill folder)."""
        self.cache.clear()
        self._memory_bytes = self._spilled_bytes = 0
        if self._spill_path is not None:
            if self._own_spill_path:
                shutil.rmtree(self._spill_path, ignore_errors=True)
            else:
                for f in self._spill_path.glob("anchor_*.pt"):
                    f.unlink(missing_ok=True)
                try:
                    self._spill_path.rmdir()
                except OSError:
                    pass  # not empty: something else lives there
        self._spill_path = None

    def _spill(self, layer: str, tensor: Tensor) -> Path:
        if self._spill_path is None:
            if self.spill_dir is None:
                self._spill_path, self._own_spill_path = Path(tempfile.mkdtemp(prefix="gen4d-anchor-")), True
            else:
                self._spill_path, self._own_spill_path = Path(self.spill_dir), False
                self._spill_path.mkdir(parents=True, exist_ok=True)
        path = self._spill_path / f"anchor_{self.step:04d}_{len(self.cache):06d}.pt"
        try:
            torch.save(tensor, path)
        except (OSError, RuntimeError) as exc:
            raise RuntimeError(f"the temporal anchor's cache could not spill to {self._spill_path} "
                               f"({exc}); it holds {self.cache_bytes / 1e9:.2f} GB so far. Free disk space "
                               f"there or give the backend more memory") from None
        return path

    def anchored_count(self, tokens: Tensor, n_current: int) -> int:
        """How many leading tokens of ``tokens`` [B, L_total, C] are anchored: STAG4D's
        rule (:func:`stag4d_anchored_tokens`) or ``n_current``."""
        if not self.stag4d_token_rule:
            return n_current
        if self.latent_tokens is None or self.base_channels is None:
            raise RuntimeError("TemporalAnchor.latent_tokens and base_channels must be set for STAG4D's token rule")
        return stag4d_anchored_tokens(tokens.shape[-1], tokens.shape[1], self.latent_tokens, self.base_channels)

    def kv_input(self, layer: str, tokens: Tensor, n_current: int | None = None) -> Tensor:
        """The K/V input of ``layer`` at the current step.

        Args:
            layer: the attention module's name in the UNet.
            tokens: ``[B, L_total, C]`` the layer's own K/V input: this frame's multi-view
                tokens, then (main pass) the reference tokens.
            n_current: L, the multi-view tokens among them (default: all).

        Returns:
            ``tokens`` itself (off, record, or w = 0), or ``tokens`` with its first
            :meth:`anchored_count` tokens mixed with the anchor's.

        Raises:
            RuntimeError: in ``"apply"`` mode with no cached tensor for (layer, step), or a
                shape that differs from the anchor's (another resolution or batch); a
                spill that fails (disk full).
        """
        if self.mode == "off":
            return tokens
        n = self.anchored_count(tokens, tokens.shape[1] if n_current is None else n_current)
        if self.mode == "record":
            part = tokens[:, :n].detach().to(self.cache_device, self.cache_dtype)
            if part.untyped_storage().data_ptr() == tokens.untyped_storage().data_ptr():
                part = part.clone()  # own storage: neither a view into the layer's input nor a saved superset
            size = part.numel() * part.element_size()
            if self._memory_bytes + size <= self._memory_limit:
                self.cache[(layer, self.step)] = part
                self._memory_bytes += size
            else:
                self.cache[(layer, self.step)] = self._spill(layer, part)
                self._spilled_bytes += size
            return tokens
        if self.weight == 0.0:
            return tokens
        anchor = self.cache.get((layer, self.step))
        if anchor is None:
            raise RuntimeError(f"no temporal anchor cached for layer {layer!r} at step {self.step}: run frame 0 "
                               f"in 'record' mode with the same number of steps first")
        if isinstance(anchor, Path):
            anchor = torch.load(anchor, weights_only=True)
        if anchor.shape != (tokens.shape[0], n, tokens.shape[2]):
            raise RuntimeError(f"anchor {tuple(anchor.shape)} and frame {tuple(tokens[:, :n].shape)} differ at "
                               f"{layer!r}")
        anchor = anchor.to(tokens.device, tokens.dtype)
        mixed = anchor if self.weight == 1.0 else torch.lerp(tokens[:, :n], anchor, self.weight)
        self.applied_steps.add(self.step)
        return mixed if n == tokens.shape[1] else torch.cat([mixed, tokens[:, n:]], dim=1)


class AnchoredAttnProcessor:
    """Attention processor for a UNet's self-attention (``attn1``) layers with
    Zero123++ reference attention and the STAG4D temporal anchor; cross-attention layers
    get the plain computation.

    Reference attention: when ``cross_attention_kwargs`` carry ``mode="w"`` and a
    ``ref_dict``, the layer stores its input in ``ref_dict[name]`` (the reference pass,
    never anchored); with ``mode="r"`` it pops it and appends it to its K/V input (the
    main pass), and then the anchor mixes the leading tokens of that concatenation
    (:meth:`TemporalAnchor.kv_input`), as STAG4D does.

    Args:
        name: the attention module's name (the key of ``unet.attn_processors``, e.g.
            ``down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor``).
        anchor: the shared :class:`TemporalAnchor`, or None.
    """

    def __init__(self, name: str, anchor: TemporalAnchor | None = None):
        from diffusers.models.attention_processor import AttnProcessor2_0

        self.name = name
        self.anchor = anchor
        self.is_self_attention = name.endswith("attn1.processor")
        self._base = AttnProcessor2_0()

    def __call__(self, attn, hidden_states: Tensor, encoder_hidden_states: Tensor | None = None,
                 attention_mask: Tensor | None = None, temb: Tensor | None = None, mode: str | None = None,
                 ref_dict: dict | None = None, **kwargs) -> Tensor:
        """Compute attention; ``hidden_states`` is ``[B, L, C]`` (or ``[B, C, H, W]``)."""
        if not self.is_self_attention or encoder_hidden_states is not None:
            return self._base(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        if mode == "w":  # reference pass: record, attend normally
            if ref_dict is not None:
                ref_dict[self.name] = hidden_states
            return self._base(attn, hidden_states, None, attention_mask, temb)
        kv = hidden_states
        if mode == "r" and ref_dict is not None:
            kv = torch.cat([kv, ref_dict.pop(self.name)], dim=1)
        if self.anchor is not None and kv.dim() == 3:
            kv = self.anchor.kv_input(self.name, kv, n_current=hidden_states.shape[1])
        if kv is hidden_states:
            return self._base(attn, hidden_states, None, attention_mask, temb)
        return self._base(attn, hidden_states, kv, attention_mask, temb)


def install_anchored_processors(unet, anchor: TemporalAnchor | None) -> list[str]:
    """Give every attention layer of ``unet`` an :class:`AnchoredAttnProcessor`.

    Args:
        unet: a diffusers ``UNet2DConditionModel``.
        anchor: shared anchor state (None: reference attention only).

    Returns:
        The names of the self-attention layers (the anchor's cache keys).
    """
    names = list(unet.attn_processors.keys())
    unet.set_attn_processor({n: AnchoredAttnProcessor(n, anchor) for n in names})
    return [n for n in names if n.endswith("attn1.processor")]
