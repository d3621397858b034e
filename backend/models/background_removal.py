"""Object masks for monocular video without an alpha channel: text-prompted segmentation
with CLIPSeg (Lüddecke & Ecker, CVPR 2022) through transformers' own classes.

CLIPSeg predicts, for a text query, a 352 × 352 logit map per image; ``sigmoid`` of it,
resized to the frame, is the soft object mask. The query defaults to a generic "the main
object" and can be the job's own description (``spec["mask_prompt"]``). CLIPSeg is used
because it is a native transformers model: it loads from a local folder without remote
code, and tests build a tiny random-weight copy of the same classes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

DEFAULT_PROMPT = "the main object"


class ClipSegBackgroundRemover:
    """Soft foreground masks ``[T, H, W]`` in [0, 1] from CLIPSeg.

    Args:
        processor: ``CLIPSegProcessor`` (image resize/normalize + CLIP tokenizer).
        model: ``CLIPSegForImageSegmentation``.
        prompt: the text query describing the object.
    """

    def __init__(self, processor, model, prompt: str = DEFAULT_PROMPT):
        self.processor = processor
        self.model = model.eval()
        self.prompt = prompt

    @classmethod
    def from_pretrained(cls, path, torch_dtype=None, local_files_only: bool = True, variant: str | None = None,
                        **kwargs):
        """Load a CLIPSeg folder (``CIDAS/clipseg-rd64-refined`` layout; ``variant``: weight
        file variant such as ``"fp16"``).

        Raises:
            OSError / ValueError: the folder is not a CLIPSeg model (the registry turns
                these into ``model_invalid``).
        """
        from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

        processor = CLIPSegProcessor.from_pretrained(str(path), local_files_only=local_files_only)
        model = CLIPSegForImageSegmentation.from_pretrained(str(path), local_files_only=local_files_only,
                                                            **({"torch_dtype": torch_dtype} if torch_dtype else {}),
                                                            **({"variant": variant} if variant else {}))
        return cls(processor, model)

    def save_pretrained(self, path) -> None:
        """Write processor and model into ``path`` (tests use it for tiny copies)."""
        Path(path).mkdir(parents=True, exist_ok=True)
        self.processor.save_pretrained(str(path))
        self.model.save_pretrained(str(path))

    def to(self, device) -> "ClipSegBackgroundRemover":
        """Move the model to ``device``; returns self."""
        self.model.to(device)
        return self

    @torch.no_grad()
    def masks(self, rgb: np.ndarray, prompt: str | None = None, batch_size: int = 8) -> np.ndarray:
        """Soft object masks for video frames.

        Args:
            rgb: ``[T, H, W, 3]`` uint8 frames.
            prompt: text query (default: the remover's).
            batch_size: frames per forward pass.

        Returns:
            ``[T, H, W]`` float32 in [0, 1]: ``sigmoid(logits)`` bilinearly resized to
            the frame size.

        Raises:
            ValueError: ``rgb`` is not ``[T, H, W, 3]`` uint8.
        """
        if rgb.ndim != 4 or rgb.shape[-1] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected [T, H, W, 3] uint8 frames, got {rgb.shape} {rgb.dtype}")
        query = prompt or self.prompt
        device = next(self.model.parameters()).device
        dtype = next(self.model.parameters()).dtype
        T, H, W = rgb.shape[:3]
        out = np.empty((T, H, W), np.float32)
        for start in range(0, T, batch_size):
            chunk = list(rgb[start:start + batch_size])
            inputs = self.processor(text=[query] * len(chunk), images=chunk, return_tensors="pt", padding=True)
            inputs = {k: (v.to(device, dtype) if v.is_floating_point() else v.to(device)) for k, v in inputs.items()}
            logits = self.model(**inputs).logits
            if logits.ndim == 2:  # transformers squeezes a batch of one
                logits = logits[None]
            probs = torch.sigmoid(logits.float())[:, None]
            out[start:start + len(chunk)] = F.interpolate(probs, size=(H, W), mode="bilinear",
                                                          align_corners=False)[:, 0].cpu().numpy()
        return out
