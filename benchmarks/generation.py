"""Generation stages at real model size with random weights: wall time per denoising
step, the extrapolated stage time at gen4d's real step count, model build time, and
memory (host RSS; CUDA max allocated when a GPU is there).

Time and memory of a network pass do not depend on the weights' values, so each default
role's model is built at its published architecture with random weights
(:func:`backend.models.architectures.build_random`; no download) and run through the same
gen4d code the jobs use, at the real resolution, for a few steps (1-2 on the CPU):

=====================  ==================================================================
stage                  what runs (real settings)
=====================  ==================================================================
text_to_image          sd-turbo 512 × 512, 1 step, no CFG (GenerationSettings)
image_to_video         SVD-XT 576 × 576, 25 frames (SVD-XT's own), 25 steps, CFG
image_to_video_card    SVD-XT at its card's 576 × 1024, 25 frames, 25 steps
multiview              Zero123++ v1.2, 960 × 640 grid, 75 steps, CFG 4 with the reference
                       pass, STAG4D anchor: frame 0 records, every later frame applies
                       (``generate_anchored_views``); T frames
sds_guidance           Zero123-XL at 256 × 256: VAE encode of a render, UNet with CFG
                       (batch 2), SDS loss and the backward through the VAE encoder; one
                       step = one SDS iteration, 1500 of them (standard preset, sds_every 1)
background_removal     CLIPSeg rd64-refined at 352 px, one step = one frame, T frames
=====================  ==================================================================

Timing. A forward pre-hook on the denoiser stamps when each step's first network pass
starts; the step callback stamps its end, so a step's duration excludes the work before
the loop (encoding) and after it (decoding). ``overhead`` = wall − Σ steps (encoding,
decoding, schedulers). Extrapolated total = overhead + first step + (real steps − 1) ×
mean of the later measured steps (the first step carries one-time warm-up; with one
measured step it is the per-step time). Totals that rest on fewer steps than the real
count say ``"extrapolated": true``.

Memory. Every stage runs in its own subprocess so peaks are separate:
``rss_after_build_bytes`` is the child's RSS once the model is built,
``peak_rss_bytes`` its ``ru_maxrss``, ``activation_peak_bytes`` their difference.
fp32 on the CPU, fp16 on CUDA (``cuda_max_allocated_bytes``, null on the CPU).

``video_to_4d`` adds background removal and multiview for T frames, the two models'
build times and reconstruction, whose time and peak are *taken* from
``benchmarks/results/dnerf_cpu_3min_400px.json`` (the slowest of the eight D-NeRF
scenes, 3min preset, same 2-core CPU), not measured here.

Usage: ``python benchmarks/generation.py [--stage NAME ...] [--threads 2] [--steps N]
[--frames 16] [--out benchmarks/results/generation_cpu.json]``. Results of earlier runs
in ``--out`` are kept and the named stages replaced, so stages can be run one at a time;
the Markdown table is written beside the JSON.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "generation_cpu.json"
RECONSTRUCTION_SOURCE = ROOT / "benchmarks" / "results" / "dnerf_cpu_3min_400px.json"
#: frames of a default video job (the standard preset's ``max_frames``).
DEFAULT_FRAMES = 16


@dataclass(frozen=True)
class Stage:
    """One benchmark stage.

    Attributes:
        name: stage id (``--stage``).
        role: model role (``backend.models.registry.ROLES``).
        settings: resolution and step settings (``size`` / ``height``, ``width``,
            ``frames``, ``steps``) that the runner reads; tests shrink them.
        steps_real: steps of the real job (per frame for multiview).
        unit: what ``seconds_total_extrapolated`` covers.
    """

    name: str
    role: str
    settings: dict = field(default_factory=dict)
    steps_real: int = 1
    unit: str = ""

    @property
    def resolution(self) -> str:
        """``"H×W"`` (plus ``×frames`` for video)."""
        s = self.settings
        if "size" in s:
            return f"{s['size']}x{s['size']}"
        return f"{s['height']}x{s['width']}" + (f"x{s['frames']}f" if "frames" in s else "")


#: SVD frames decoded per pass here: 2 keeps the fp32 decode within a 24 GB host (diffusers'
#: default, every frame at once, would add ~40 GB of fp32 decode activations); the decode
#: peak per chunk is ``benchmarks/vae_decode_peak.py``'s business, not this table's.
DECODE_CHUNK = 2


def stages(frames: int = DEFAULT_FRAMES, card_frames: int = 25) -> dict[str, Stage]:
    """The benchmark stages at gen4d's real settings (the defaults of
    ``GenerationSettings`` and ``MultiviewSettings``) for a job of ``frames`` frames;
    ``card_frames`` < 25 measures SVD at its card's resolution with fewer frames (when 25
    do not fit in memory or time; the totals then cover those frames only)."""
    from backend.models.memory import SVD_XT_FRAMES
    from backend.pipeline.generate_video import GenerationSettings
    from backend.pipeline.multiview_footage import MultiviewSettings

    g, mv = GenerationSettings(), MultiviewSettings()
    svd_frames = g.video_frames or SVD_XT_FRAMES  # 0: the model's own frame count
    return {s.name: s for s in (
        Stage("text_to_image", "text_to_image", {"size": g.image_size}, g.image_steps,
              f"one {g.image_size} px image ({g.image_steps} step{'s' if g.image_steps > 1 else ''})"),
        Stage("image_to_video", "image_to_video", {"height": g.video_height, "width": g.video_width,
                                                   "frames": svd_frames}, g.video_steps,
              f"one {svd_frames}-frame {g.video_height} x {g.video_width} video ({g.video_steps} steps)"),
        Stage("image_to_video_card", "image_to_video", {"height": 576, "width": 1024, "frames": card_frames},
              g.video_steps,
              f"one {card_frames}-frame 576 x 1024 video ({g.video_steps} steps, the model card's resolution"
              + (")" if card_frames == 25 else f"; the card's 25 frames did not fit, {card_frames} measured)")),
        Stage("multiview", "multiview", {"height": mv.grid_height, "width": mv.grid_width, "frames": frames,
                                         "guidance": mv.guidance_scale}, mv.steps,
              f"{frames} video frames x {mv.steps} steps (frame 0 records the anchor, the others apply it)"),
        Stage("sds_guidance", "sds_guidance", {"size": 256}, 1500,
              "1500 SDS iterations (standard preset, sds_every 1; rendering not included)"),
        Stage("background_removal", "background_removal", {"size": 352, "frames": frames, "frame_px": 320},
              frames, f"{frames} video frames (one step = one frame)"),
    )}


# ------------------------------------------------------------------------ timing arithmetic

def step_durations(starts: list[float], ends: list[float]) -> list[float]:
    """Each step's duration from time stamps: step k runs from the first network-pass
    start after step k−1's end (or after −∞) to its own end.

    Args:
        starts: times (s) at which a denoiser forward began, ascending.
        ends: times (s) at which each step's callback ran, ascending.

    Raises:
        ValueError: a step with no network pass started before its end.
    """
    out, prev = [], float("-inf")
    for end in ends:
        begun = [s for s in starts if prev < s <= end]
        if not begun:
            raise ValueError(f"step ending at {end} has no network pass after {prev}")
        out.append(end - begun[0])
        prev = end
    return out


def extrapolate(durations: list[float], wall: float, steps_real: int) -> dict:
    """Per-step time and the stage total at ``steps_real`` steps.

    ``per_step`` = mean of ``durations[1:]`` (the first carries warm-up), or
    ``durations[0]`` when only one step was measured; ``overhead`` = ``wall − Σ durations``
    (clamped at 0); total = ``overhead + durations[0] + (steps_real − 1) · per_step``.

    Returns:
        ``{"steps_measured", "seconds_per_step", "seconds_overhead",
        "seconds_total_extrapolated", "extrapolated"}``; ``extrapolated`` is False only
        when every real step was measured.

    Raises:
        ValueError: no durations, or ``steps_real`` < 1.
    """
    if not durations or steps_real < 1:
        raise ValueError("need at least one measured step and steps_real >= 1")
    per_step = statistics.fmean(durations[1:]) if len(durations) > 1 else durations[0]
    overhead = max(0.0, wall - sum(durations))
    total = overhead + durations[0] + (steps_real - 1) * per_step
    return {"steps_measured": len(durations), "seconds_per_step": per_step, "seconds_overhead": overhead,
            "seconds_total_extrapolated": total, "extrapolated": len(durations) < steps_real}


class StepClock:
    """Time stamps of denoiser passes (forward pre-hooks) and step ends (callbacks);
    synchronizes CUDA before each stamp when ``cuda``."""

    def __init__(self, denoisers, cuda: bool = False):
        self.starts: list[float] = []
        self.ends: list[float] = []
        self.cuda = cuda
        self._hooks = [m.register_forward_pre_hook(lambda *_: self.starts.append(self._now())) for m in denoisers]

    def _now(self) -> float:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
        return time.perf_counter()

    def step_done(self, *_args, **_kwargs) -> dict:
        """Stamp a step's end; usable as diffusers' ``callback_on_step_end`` (returns {})."""
        self.ends.append(self._now())
        return {}

    def close(self) -> list[float]:
        """Remove the hooks; the step durations (:func:`step_durations`)."""
        for h in self._hooks:
            h.remove()
        return step_durations(self.starts, self.ends)


# ------------------------------------------------------------------------ stage runners

def _now_sync(cuda: bool) -> float:
    if cuda:
        import torch

        torch.cuda.synchronize()
    return time.perf_counter()


def run_stage(stage: Stage, obj, steps: int, device: str = "cpu") -> dict:
    """Run ``stage`` with the role object ``obj`` for ``steps`` measured steps (per
    frame for multiview, frames for background removal) and extrapolate.

    ``steps`` is capped at the stage's real step count (sd-turbo runs 1 step).

    Returns:
        :func:`extrapolate`'s dict plus ``step_seconds`` (every measured duration) and,
        for multiview, the record / apply split.
    """
    import numpy as np
    import torch

    steps = min(steps, stage.steps_real)
    cuda = device.startswith("cuda")
    s = stage.settings
    rng = np.random.default_rng(0)
    if stage.role == "text_to_image":
        clock = StepClock([obj.unet], cuda)
        t0 = _now_sync(cuda)
        obj(prompt="a red chair on a white background", num_inference_steps=steps, guidance_scale=0.0,
            height=s["size"], width=s["size"], output_type="np", generator=torch.Generator().manual_seed(0),
            callback_on_step_end=clock.step_done)
        wall = _now_sync(cuda) - t0
        d = clock.close()
        return {**extrapolate(d, wall, stage.steps_real), "step_seconds": d}
    if stage.role == "image_to_video":
        from PIL import Image

        image = Image.fromarray(rng.integers(0, 256, (s["height"], s["width"], 3), dtype=np.uint8))
        clock = StepClock([obj.unet], cuda)
        t0 = _now_sync(cuda)
        obj(image, height=s["height"], width=s["width"], num_frames=s["frames"], num_inference_steps=steps,
            decode_chunk_size=DECODE_CHUNK, output_type="np", generator=torch.Generator().manual_seed(0),
            callback_on_step_end=clock.step_done)
        wall = _now_sync(cuda) - t0
        d = clock.close()
        return {**extrapolate(d, wall, stage.steps_real), "step_seconds": d}
    if stage.role == "multiview":
        from backend.models.zero123plus import generate_anchored_views

        frames = [rng.integers(0, 256, (320, 320, 4), dtype=np.uint8) for _ in range(2)]
        clock = StepClock([obj.unet], cuda)
        t0 = _now_sync(cuda)
        _, stats = generate_anchored_views(obj, frames, num_inference_steps=steps, guidance_scale=s["guidance"],
                                           height=s["height"], width=s["width"],
                                           progress=lambda done, total: clock.step_done())
        wall = _now_sync(cuda) - t0
        d = clock.close()
        record, apply = d[:steps], d[steps:]
        overhead_frame = max(0.0, wall - sum(d)) / 2
        first = extrapolate(record, sum(record) + overhead_frame, stage.steps_real)
        later = extrapolate(apply, sum(apply) + overhead_frame, stage.steps_real)
        total = first["seconds_total_extrapolated"] + (s["frames"] - 1) * later["seconds_total_extrapolated"]
        return {"steps_measured": steps, "seconds_per_step": later["seconds_per_step"],
                "seconds_per_step_record_frame": first["seconds_per_step"],
                "seconds_overhead_per_frame": overhead_frame,
                "seconds_first_frame_extrapolated": first["seconds_total_extrapolated"],
                "seconds_per_later_frame_extrapolated": later["seconds_total_extrapolated"],
                "seconds_total_extrapolated": total, "extrapolated": True, "frames_measured": 2,
                "anchor_stats": stats, "step_seconds": d}
    if stage.role == "sds_guidance":
        from backend.models.zero123_guidance import pose_features
        from backend.optim import sds

        size = s["size"]
        t0 = _now_sync(cuda)
        cond = torch.rand(1, size, size, 3, generator=torch.Generator().manual_seed(0))
        clip, cond_latents = obj.encode_condition(cond.to(device))
        pose = pose_features(torch.tensor([10.0]), torch.tensor([40.0]), torch.zeros(1)).to(device)
        gen = torch.Generator().manual_seed(0)
        d = []
        for i in range(steps):
            ts = _now_sync(cuda)
            render = torch.rand(1, size, size, 3, generator=gen).to(device, obj.vae.dtype).requires_grad_(True)
            latents = obj.encode_images(render)
            eps_fn = obj.eps_fn(clip, cond_latents, pose)
            t = sds.sample_timestep(i, len(obj.alphas_cumprod), gen)
            loss = sds.sds_loss(latents, eps_fn, t, obj.alphas_cumprod, generator=gen)
            loss.backward()
            if render.grad is None:
                raise RuntimeError("the SDS gradient did not reach the rendered image")
            d.append(_now_sync(cuda) - ts)
        wall = _now_sync(cuda) - t0
        return {**extrapolate(d, wall, stage.steps_real), "step_seconds": d}
    if stage.role == "background_removal":
        px = s["frame_px"]
        video = rng.integers(0, 256, (steps, px, px, 3), dtype=np.uint8)
        d = []
        t0 = _now_sync(cuda)
        for i in range(steps):
            ts = _now_sync(cuda)
            obj.masks(video[i:i + 1], batch_size=1)
            d.append(_now_sync(cuda) - ts)
        wall = _now_sync(cuda) - t0
        return {**extrapolate(d, wall, stage.steps_real), "step_seconds": d}
    raise ValueError(f"no runner for role {stage.role!r}")


# ------------------------------------------------------------------------ child process

def _rss_bytes() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def child(stage: Stage, steps: int, threads: int, device: str) -> dict:
    """Build ``stage``'s model at real size and run it (in this process); the stage's
    result record (see the module docstring for the fields)."""
    import torch

    from backend.models import architectures
    from backend.models.registry import ROLES

    torch.set_num_threads(threads)
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    t0 = time.perf_counter()
    obj = architectures.build_random(stage.role, dtype=dtype, device=device)
    build_s = time.perf_counter() - t0
    nets = architectures.networks(obj)
    params = sum(p.numel() for m in nets for p in m.parameters())
    weights = sum(t.numel() * t.element_size() for m in nets for t in list(m.parameters()) + list(m.buffers()))
    after_build = _rss_bytes()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    result = run_stage(stage, obj, steps, device)
    peak = max(_peak_rss_bytes(), after_build)
    return {"stage": stage.name, "role": stage.role, "model": ROLES[stage.role].default_source,
            "dtype": str(dtype).replace("torch.", ""), "device": device, "threads": threads,
            "resolution": stage.resolution, "steps_real": stage.steps_real, "unit": stage.unit,
            **result, "build_seconds": build_s, "params": params, "weights_bytes": weights,
            "rss_after_build_bytes": after_build, "peak_rss_bytes": peak,
            "activation_peak_bytes": peak - after_build,
            "cuda_max_allocated_bytes": torch.cuda.max_memory_allocated() if device.startswith("cuda") else None,
            "weights": "random (published architecture, backend/models/architectures.py)"}


# ------------------------------------------------------------------------ report

def video_to_4d(stage_results: dict, frames: int, reconstruction: dict) -> dict:
    """The whole video → 4D job from stage results: background removal and multiview for
    ``frames`` frames, both models' build time, plus ``reconstruction``
    (``{"seconds", "peak_rss_bytes", "source"}``).

    Returns:
        ``{"frames", "seconds", "seconds_by_part", "peak_rss_bytes", "extrapolated",
        "missing", "reconstruction_source"}``; ``missing`` names stages not measured
        (then ``seconds`` covers only the rest).
    """
    parts, missing, peaks = {}, [], [reconstruction.get("peak_rss_bytes") or 0]
    for name in ("background_removal", "multiview"):
        r = stage_results.get(name)
        if r is None or "seconds_total_extrapolated" not in r:
            missing.append(name)
            continue
        parts[name] = r["seconds_total_extrapolated"]
        parts[f"{name}_build"] = r["build_seconds"]
        peaks.append(r["peak_rss_bytes"])
    parts["reconstruction"] = reconstruction["seconds"]
    return {"frames": frames, "seconds": sum(parts.values()), "seconds_by_part": parts,
            "peak_rss_bytes": max(peaks), "extrapolated": True, "missing": missing,
            "reconstruction_source": reconstruction["source"]}


def reconstruction_reference(path: Path = RECONSTRUCTION_SOURCE) -> dict:
    """The slowest scene's training time and peak RSS of the D-NeRF 3min-preset run
    (taken from ``path``, not measured here)."""
    rows = json.loads(Path(path).read_text())
    slow = max(rows, key=lambda r: r["train_seconds"])
    return {"seconds": slow["train_seconds"], "peak_rss_bytes": int(max(r["peak_mem_mb"] for r in rows) * 2 ** 20),
            "source": f"taken from {Path(path).relative_to(ROOT) if Path(path).is_relative_to(ROOT) else path}: "
                      f"longest train_seconds of {len(rows)} D-NeRF scenes (3min preset, 2 CPU threads, "
                      f"{slow['scene']}), peak = largest peak_mem_mb; not measured here"}


def _gb(n) -> str:
    return "–" if n is None else f"{n / 1e9:.2f}"


def _secs(s) -> str:
    if s is None:
        return "–"
    return f"{s:.1f} s" if s < 120 else (f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h")


def markdown(report: dict) -> str:
    """The Markdown table of a report (stages, then the video → 4D job)."""
    lines = [f"Generation stages at real size with **random weights**, {report['device']}, "
             f"{report['threads']} threads, torch {report['torch']}, {report['date']}. Steps beyond "
             "those measured are **extrapolated** (see benchmarks/generation.py).", "",
             "| stage | model | resolution | dtype | steps real / measured | s per step | total (extrapolated) "
             "| covers | params | weights GB | RSS after build GB | peak RSS GB | activations GB | CUDA max GB | "
             "build s |",
             "| --- | --- | --- | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in report["stages"].values():
        if "error" in r:
            lines.append(f"| {r['stage']} | `{r['model']}` | {r['resolution']} | | | | failed: {r['error']} "
                         "| | | | | | | | |")
            continue
        lines.append(f"| {r['stage']} | `{r['model']}` | {r['resolution']} | {r['dtype']} | "
                     f"{r['steps_real']} / {r['steps_measured']} | {r['seconds_per_step']:.1f} | "
                     f"{_secs(r['seconds_total_extrapolated'])} | {r['unit']} | {r['params'] / 1e9:.3f} B | "
                     f"{_gb(r['weights_bytes'])} | {_gb(r['rss_after_build_bytes'])} | {_gb(r['peak_rss_bytes'])} | "
                     f"{_gb(r['activation_peak_bytes'])} | {_gb(r['cuda_max_allocated_bytes'])} | "
                     f"{r['build_seconds']:.0f} |")
        if r.get("note"):
            lines.append(f"| | note: {r['note']} | | | | | | | | | | | | | |")
    v = report.get("video_to_4d")
    if v:
        parts = ", ".join(f"{k} {_secs(s)}" for k, s in v["seconds_by_part"].items())
        lines += ["", f"**Video → 4D job, {v['frames']} frames (extrapolated):** {_secs(v['seconds'])} "
                      f"({parts}); peak host RSS {_gb(v['peak_rss_bytes'])} GB (stages run one after another)."
                      + (f" Not measured: {', '.join(v['missing'])}." if v["missing"] else "")
                      + f" Reconstruction: {v['reconstruction_source']}."]
    return "\n".join(lines) + "\n"


def write_report(out: Path, new_results: list[dict], threads: int, frames: int, command: str) -> dict:
    """Merge ``new_results`` into the report at ``out`` (kept stages of earlier runs with
    the same device and threads), recompute ``video_to_4d`` and write the JSON and the
    Markdown beside it (``.md``)."""
    import torch

    device = f"cuda: {torch.cuda.get_device_name()}" if torch.cuda.is_available() else f"cpu: {_cpu_name()}"
    old = json.loads(out.read_text()) if out.exists() else {}
    keep = old.get("stages", {}) if (old.get("device"), old.get("threads")) == (device, threads) else {}
    stages_out = {**keep, **{r["stage"]: r for r in new_results}}
    commands = [c for c in old.get("commands", []) if keep] + [command]
    report = {"device": device, "torch": torch.__version__, "threads": threads,
              "date": _dt.date.today().isoformat(), "command": command, "commands": commands,
              "weights": "random, at the published architecture (backend/models/architectures.py)",
              "stages": stages_out,
              "video_to_4d": video_to_4d(stages_out, frames, reconstruction_reference())}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(report))
    return report


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", action="append", choices=sorted(stages()), default=None,
                        help="stage(s) to run (default: all but image_to_video_card)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (set explicitly)")
    parser.add_argument("--steps", type=int, default=None,
                        help="measured steps per stage (default: 1 on the CPU, 3 on CUDA; multiview: per frame)")
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help="video frames T of the job")
    parser.add_argument("--card-frames", type=int, default=25,
                        help="frames of image_to_video_card (fewer than the card's 25 when they do not fit)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--note", default=None, help="a note stored with the stage(s) run")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads < 1 or args.frames < 2 or (args.steps is not None and args.steps < 1):
        parser.error("--threads and --steps must be >= 1 and --frames >= 2")
    return args


def _device(choice: str) -> str:
    import torch

    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return choice


def main(argv: list[str] | None = None) -> int:
    """Run the stages, each in a subprocess, and write the report."""
    args = parse_args(argv)
    table = stages(args.frames, args.card_frames)
    device = _device(args.device)
    steps = args.steps or (3 if device == "cuda" else 1)
    if args.child:
        result = child(table[args.child], steps, args.threads, device)
        args.result.write_text(json.dumps(result))
        return 0
    names = args.stage or [n for n in table if n != "image_to_video_card"]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    results = []
    for name in names:
        with tempfile.TemporaryDirectory() as tmp:
            res_path = Path(tmp) / "result.json"
            cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--threads", str(args.threads),
                   "--steps", str(steps), "--frames", str(args.frames), "--device", device,
                   "--card-frames", str(args.card_frames),
                   "--result", str(res_path)]
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
            if proc.returncode != 0 or not res_path.exists():
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
                result = {"stage": name, "role": table[name].role, "model": "", "resolution": table[name].resolution,
                          "error": f"exit {proc.returncode}: {' | '.join(tail)}"[:400]}
            else:
                result = json.loads(res_path.read_text())
            result["child_wall_seconds"] = time.perf_counter() - t0
        if args.note:
            result["note"] = args.note
        results.append(result)
        print(json.dumps({k: result.get(k) for k in ("stage", "seconds_per_step", "seconds_total_extrapolated",
                                                     "peak_rss_bytes", "build_seconds", "error")}), flush=True)
    command = "python benchmarks/generation.py " + " ".join(argv if argv is not None else sys.argv[1:])
    write_report(args.out, results, args.threads, args.frames, command)
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
