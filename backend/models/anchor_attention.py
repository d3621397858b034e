"""STAG4D's training-free temporal anchor, as a diffusers attention processor.

STAG4D (Sec. 3.2, "temporal anchor"): generating the multi-view images of frame k with
the same multi-view diffusion model as frame 0 gives views that drift between frames. Run
frame 0 first and cache, for every self-attention layer and every denoising step, the
hidden states that feed that layer's K and V projections. For frame k, at the same layer
and step, replace the multi-view tokens that feed K and V by

    kv_input = (1 − w) · current + w · anchor          (w = 0.5 in STAG4D)

Queries are computed from the current tokens, and Zero123++'s reference-image tokens
(appended to K/V by its reference attention) are left alone. ``w = 0`` is exactly the
unanchored model; ``w = 1`` makes frame k's multi-view K/V equal frame 0's.

The same processor also implements Zero123++'s reference attention (Shi et al. 2023,
"Zero123++", Sec. 3: the condition image's latent, noised to the current timestep, runs
through the UNet first; each self-attention layer records its input, and the main pass
appends those tokens to its K/V input).

The cache holds one tensor per (layer, step), stored on ``cache_device`` in
``cache_dtype`` (CPU fp16 by default) so that it does not compete with the UNet for GPU
memory; :attr:`TemporalAnchor.cache_bytes` reports its size and :meth:`clear` frees it.
It is bounded by ``max_cache_bytes``: recording stops at the first step that would pass
the budget, and later frames are anchored on the recorded (early, structure-setting)
steps only; :attr:`TemporalAnchor.anchored_steps` says how many. For Zero123++ v1.2
(960 × 640, CFG) one step is about 108 MB in fp16, so the 2 GiB default anchors the
first ~19 of 75 steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

#: modes of :class:`TemporalAnchor`.
ANCHOR_MODES = ("off", "record", "apply")


@dataclass
class TemporalAnchor:
    """Shared state of every :class:`AnchoredAttnProcessor` of one UNet.

    Attributes:
        weight: w of the module docstring, in [0, 1].
        mode: ``"off"`` (no anchoring), ``"record"`` (frame 0: cache the K/V inputs) or
            ``"apply"`` (frame k: mix the cached ones in).
        step: index of the current denoising step; the pipeline sets it before each UNet
            call.
        cache_device: where cached tensors live (``"cpu"`` by default).
        cache_dtype: their dtype (``torch.float16`` by default).
        cache: ``{(layer name, step): Tensor [B, L, C]}``.
        max_cache_bytes: the cache's budget (bytes).

    Raises:
        ValueError: (at construction or :meth:`set_mode`) weight outside [0, 1] or an
            unknown mode.
    """

    weight: float = 0.5
    mode: str = "off"
    step: int = 0
    cache_device: str | torch.device = "cpu"
    cache_dtype: torch.dtype = torch.float16
    cache: dict = field(default_factory=dict)
    max_cache_bytes: int = 2 * 1024 ** 3

    def __post_init__(self):
        self._bytes = 0
        self._full_from_step: int | None = None
        if not 0.0 <= self.weight <= 1.0:
            raise ValueError(f"anchor weight must be in [0, 1], got {self.weight}")
        self.set_mode(self.mode)

    def set_mode(self, mode: str) -> None:
        """Switch mode; ``"record"`` empties the cache first."""
        if mode not in ANCHOR_MODES:
            raise ValueError(f"anchor mode must be one of {ANCHOR_MODES}, got {mode!r}")
        if mode == "record":
            self.clear()
        self.mode = mode

    @property
    def cache_bytes(self) -> int:
        """Bytes held by the cache."""
        return self._bytes

    @property
    def anchored_steps(self) -> int | None:
        """Steps recorded in full before the budget ran out (None: no cut)."""
        return self._full_from_step

    def clear(self) -> None:
        """Free every cached tensor."""
        self.cache.clear()
        self._bytes = 0
        self._full_from_step = None

    def kv_input(self, layer: str, current: Tensor) -> Tensor:
        """The multi-view tokens that feed K/V at ``layer`` for the current step.

        Args:
            layer: the attention module's name in the UNet.
            current: ``[B, L, C]`` the layer's own input (this frame's tokens).

        Returns:
            ``current`` itself (off, record, or w = 0), or the mix with the anchor.

        Raises:
            RuntimeError: in ``"apply"`` mode with no cached tensor for (layer, step), or a
                shape that differs from the anchor's (another resolution or batch).
        """
        if self.mode == "record":
            if self._full_from_step is not None and self.step >= self._full_from_step:
                return current
            size = current.numel() * torch.finfo(self.cache_dtype).bits // 8
            if self._bytes + size > self.max_cache_bytes:
                # Drop this step's partial entries: a step is anchored in full or not at all.
                for key in [k for k in self.cache if k[1] == self.step]:
                    self._bytes -= self.cache[key].numel() * self.cache[key].element_size()
                    del self.cache[key]
                self._full_from_step = self.step
                return current
            self.cache[(layer, self.step)] = current.detach().to(self.cache_device, self.cache_dtype)
            self._bytes += size
            return current
        if self.mode == "off" or self.weight == 0.0:
            return current
        if self._full_from_step is not None and self.step >= self._full_from_step:
            return current  # past the budget: unanchored (reported by anchored_steps)
        anchor = self.cache.get((layer, self.step))
        if anchor is None:
            raise RuntimeError(f"no temporal anchor cached for layer {layer!r} at step {self.step}: run frame 0 "
                               f"in 'record' mode with the same number of steps first")
        if anchor.shape != current.shape:
            raise RuntimeError(f"anchor {tuple(anchor.shape)} and frame {tuple(current.shape)} differ at {layer!r}")
        anchor = anchor.to(current.device, current.dtype)
        if self.weight == 1.0:
            return anchor
        return torch.lerp(current, anchor, self.weight)


class AnchoredAttnProcessor:
    """Attention processor for a UNet's self-attention (``attn1``) layers with
    Zero123++ reference attention and the STAG4D temporal anchor; cross-attention layers
    get the plain computation.

    Reference attention: when ``cross_attention_kwargs`` carry ``mode="w"`` and a
    ``ref_dict``, the layer stores its input in ``ref_dict[name]`` (the reference pass);
    with ``mode="r"`` it pops it and appends it to its K/V input (the main pass).

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
        if self.anchor is not None and hidden_states.dim() == 3:
            kv = self.anchor.kv_input(self.name, hidden_states)
        if mode == "r" and ref_dict is not None:
            kv = torch.cat([kv, ref_dict.pop(self.name)], dim=1)
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
