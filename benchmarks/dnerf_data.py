"""D-NeRF scenes as gen4d footage, read the way D-NeRF's own loader reads them.

D-NeRF (Pumarola et al. 2021, ``load_blender.py`` of its repository) reads each 800×800
straight-alpha RGBA image, halves it with ``cv2.resize(..., interpolation=cv2.INTER_AREA)``
on the *straight* RGBA for the 400-px protocol, then composites on white:
``rgb·a + (1 − a)``. The ground truth of :mod:`benchmarks.dnerf` is exactly that image.

gen4d's own ingest (:func:`backend.pipeline.ingest.load_footage`) resizes premultiplied
colour instead (no background colour bleeds into edges); on white the two differ at the
object's rim, so the benchmark reads the images here and hands the backend footage it
has already resized. The data stays in ``../shared/datasets/dnerf`` and is never copied.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from backend.pipeline.ingest import Footage, load_camera_rig, read_image_rgba, resolve_image_path
from protocol.formats.transforms import read_transforms

#: the 8 scenes, in the field's order.
SCENES = ("bouncingballs", "hellwarrior", "hook", "jumpingjacks", "lego", "mutant", "standup", "trex")

#: where the data set lives, beside the checkout (see its README).
DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "dnerf"


def load_split(scene_dir: Path, split: str, resolution: int) -> Footage:
    """One split of a D-NeRF scene at ``resolution`` px (square), D-NeRF's way.

    Args:
        scene_dir: the scene folder (``transforms_<split>.json`` and images).
        split: ``"train"``, ``"val"`` or ``"test"``.
        resolution: output side in pixels; images larger than that are downscaled with
            ``cv2.INTER_AREA`` on the straight-alpha RGBA (D-NeRF's ``half_res``).

    Returns:
        :class:`~backend.pipeline.ingest.Footage` with straight-alpha ``[F, R, R, 4]``
        float32 images, Blender c2w, OpenCV viewmats, Ks for ``R`` px, times in [0, 1].

    Raises:
        BadInputError: a missing/malformed transforms file or image.
    """
    scene_dir = Path(scene_dir)
    json_path = scene_dir / f"transforms_{split}.json"
    rig = load_camera_rig(json_path, size=(resolution, resolution))
    images = []
    for file_path in rig.file_paths:
        img = read_image_rgba(resolve_image_path(scene_dir, file_path))
        if img.shape[0] != resolution or img.shape[1] != resolution:
            img = cv2.resize(img, (resolution, resolution), interpolation=cv2.INTER_AREA)
        images.append(np.clip(img, 0.0, 1.0))
    c2w = torch.from_numpy(np.stack([f.c2w for f in read_transforms(json_path).frames])).to(torch.float32)
    return Footage(images=torch.from_numpy(np.stack(images)).to(torch.float32), c2w=c2w, viewmats=rig.viewmats,
                   Ks=rig.Ks, times=rig.times, file_paths=rig.file_paths)


def on_white(rgba: torch.Tensor) -> torch.Tensor:
    """Straight-alpha ``[..., 4]`` → RGB over white ``[..., 3]`` (the protocol's ground truth)."""
    return rgba[..., :3] * rgba[..., 3:] + (1.0 - rgba[..., 3:])
