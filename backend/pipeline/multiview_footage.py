"""Multi-view stage: monocular frames -> Zero123++ views with STAG4D's temporal anchor ->
transforms-format footage that reconstruction reads as is (Efficient4D: generated
multi-view video used directly as training data).

Camera model (an assumption, documented because Zero123++ v1.2 is not metric): the
object sits at the origin, every view is a 30° field-of-view camera at ``radius`` metres
looking at it, Z up. The input frame is the view at azimuth 0°, elevation 0°; generated
view i is at azimuth ``30° + 60°·i`` and elevation +20° / −10° alternating (v1.2).
Reconstruction is scale-free, so only the consistency of these poses matters.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from backend.pipeline.context import JobContext
from backend.pipeline.video_ingest import BACKGROUND_THRESHOLD, VideoFrames, plain_background_distance
from protocol.formats.transforms import TRANSFORMS_TRAIN, frame_record, write_transforms

#: the stage name in progress events.
STAGE = "multiview"


@dataclass
class MultiviewSettings:
    """Multi-view generation settings (job spec ``options`` may override them).

    Attributes:
        steps: denoising steps (STAG4D: 75).
        guidance_scale: CFG (STAG4D: 4).
        anchor_weight: temporal anchor weight w (STAG4D: 0.5).
        stag4d_token_rule: anchor the tokens STAG4D's rule names, the mid block's reference
            tokens included (its reference code's behaviour, the default); False: the
            multi-view tokens only (:mod:`backend.models.anchor_attention`).
        grid_height, grid_width: the 3 × 2 grid in pixels (v1.2: 960 × 640).
        radius: camera distance (m).
        seed: noise seed shared by all frames.
    """

    steps: int = 75
    guidance_scale: float = 4.0
    anchor_weight: float = 0.5
    stag4d_token_rule: bool = True
    grid_height: int = 960
    grid_width: int = 640
    radius: float = 2.0
    seed: int = 0


def condition_rgba8(rgba: np.ndarray) -> np.ndarray:
    """``[H, W, 4]`` float straight alpha in [0, 1] -> ``[H, W, 4]`` uint8 RGBA, rounded.

    The frame keeps its alpha: the pipeline composites it on grey 127
    (:func:`backend.models.zero123plus.to_condition_rgb`, following the official Zero123++
    ``to_rgb_image``, pipeline.py:30-40,346), as it would an RGBA PNG; not on white.
    """
    return (np.clip(rgba, 0, 1) * 255 + 0.5).astype(np.uint8)


def view_alpha(view: np.ndarray, threshold: float = BACKGROUND_THRESHOLD) -> tuple[np.ndarray, bool]:
    """Object mask of one generated view from its plain background (the median of its
    border), ``[H, W, 3]`` float in [0, 1] -> ``([H, W] float32, found)``.

    ``found`` is False when nothing plausible separates (coverage under 0.5% or over
    90%, e.g. the noise of an untrained model); the mask is then all ones, so the view
    still constrains colour, and the caller reports it.
    """
    mask = (plain_background_distance(view[None])[0] > threshold).astype(np.float32)
    coverage = float(mask.mean())
    if coverage < 0.005 or coverage > 0.9:
        return np.ones(view.shape[:2], np.float32), False
    return mask, True


def write_multiview_footage(frames: VideoFrames, pipe, out_dir: Path, settings: MultiviewSettings,
                            ctx: JobContext) -> tuple[Path, dict]:
    """Generate six views per frame with the anchored Zero123++ pipeline and write them,
    with the input frames, as transforms-format footage. Each frame conditions the
    pipeline as uint8 RGBA (:func:`condition_rgba8`), so its background is grey 127.

    Args:
        frames: the ingested video (:class:`VideoFrames`).
        pipe: a loaded :class:`backend.models.zero123plus.Zero123PlusPipeline`.
        out_dir: where ``transforms_train.json`` and ``train/*.png`` go (created).
        settings: :class:`MultiviewSettings`.
        ctx: progress (stage ``"multiview"``, one step per denoising step of every frame),
            the preview (frame 0's grid) and cancellation.

    Returns:
        ``(out_dir, stats)``; stats holds the anchor cache size and how many views got a
        mask from their background.

    Raises:
        JobCancelled: between denoising steps.
    """
    from backend.cameras import look_at_c2w
    from backend.models.zero123plus import VIEW_FOV_DEG_V12, generate_anchored_views, view_cameras

    out_dir = Path(out_dir)
    (out_dir / "train").mkdir(parents=True, exist_ok=True)
    inputs = [condition_rgba8(f) for f in frames.images]

    def progress(done: int, total: int) -> None:
        ctx.check_cancelled()
        ctx.progress(STAGE, done, total, message=f"frame {min(done // max(settings.steps, 1) + 1, len(inputs))}"
                                                 f"/{len(inputs)}")

    outputs, stats = generate_anchored_views(pipe, inputs, num_inference_steps=settings.steps,
                                             guidance_scale=settings.guidance_scale,
                                             anchor_weight=settings.anchor_weight, seed=settings.seed,
                                             height=settings.grid_height, width=settings.grid_width,
                                             progress=progress, spill_dir=out_dir / "anchor_cache",
                                             stag4d_token_rule=settings.stag4d_token_rule)
    buf = io.BytesIO()
    iio.imwrite(buf, (outputs[0].grid.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8), extension=".png")
    ctx.preview(buf.getvalue())
    c2w_views, fov = view_cameras(settings.radius, fov_deg=VIEW_FOV_DEG_V12)
    c2w_input = look_at_c2w([settings.radius, 0.0, 0.0])
    records, masked = [], 0
    size = outputs[0].views.shape[-1]
    for k, (frame, out) in enumerate(zip(frames.images, outputs)):
        t = float(frames.times[k])
        inp = (np.clip(frame, 0, 1) * 255 + 0.5).astype(np.uint8)
        if inp.shape[0] != size:
            import cv2

            inp = cv2.resize(inp, (size, size), interpolation=cv2.INTER_AREA)
        iio.imwrite(out_dir / "train" / f"f{k:03d}_in.png", inp)
        records.append(frame_record(f"./train/f{k:03d}_in", c2w_input, t))
        for i, view in enumerate(out.views.permute(0, 2, 3, 1).numpy()):
            alpha, found = view_alpha(view)
            masked += int(found)
            rgba = np.concatenate([view, alpha[..., None]], -1)
            iio.imwrite(out_dir / "train" / f"f{k:03d}_v{i}.png", (rgba * 255 + 0.5).astype(np.uint8))
            records.append(frame_record(f"./train/f{k:03d}_v{i}", c2w_views[i], t))
    write_transforms(out_dir / TRANSFORMS_TRAIN, records, camera_angle_x=fov,
                     extra={"gen4d": {"source": "multiview", "mask_source": frames.mask_source,
                                      "views_masked": masked, "views_total": 6 * len(outputs),
                                      "anchor_weight": settings.anchor_weight}})
    stats = {**stats, "views_masked": masked, "views_total": 6 * len(outputs)}
    return out_dir, stats
