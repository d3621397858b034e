"""The memory plan of every generation stage at several VRAM budgets, and the job's peak:
an ESTIMATE made on the host (``backend.models.memory``), not a measurement.

For each budget (GB; ``none`` = no limit) and each job type (``video``: background removal →
multi-view → reconstruction with optional SDS guidance; ``image``: SVD → multi-view;
``prompt``: text-to-image → SVD → multi-view) it prints and writes, per stage, the plan
``plan_for`` chooses on a CUDA device and its estimated peak, and the job's maximum (stages
run one after another and free their model; SDS guidance runs beside the reconstruction,
whose peak is taken from ``benchmarks/results/reconstruct_gpu.json`` — a GPU measurement at
that file's sizes).

Inputs: the measured real-size activations of ``benchmarks/results/generation_cpu.json``
(``benchmarks/generation.py``; ``--profile`` names another file). Without it the estimate
counts weights and VAE decode only, and the output says so.

Outputs: ``benchmarks/results/vram_plan.json`` and ``vram_plan.md``.

``--measure`` (needs CUDA and ``backend.models.architectures.build_random``): for each stage,
builds the role's model at its published size with random weights in fp16, applies the
12 GB (or ``--measure-budget``) plan, runs the stage at its real size with ``--steps``
denoising steps and records ``torch.cuda.max_memory_allocated`` (a MEASUREMENT), written to
``benchmarks/results/vram_measured_<gpu>.json``. Peak memory does not depend on the number
of steps beyond the first, nor on the weights' values.

Usage: ``python benchmarks/vram_plan.py [--budgets 8 12 16 24 none] [--preset standard]``
       ``python benchmarks/vram_plan.py --measure [--measure-budget 12] [--steps 2]``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from backend.models import memory  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
#: stages of each job type, in order (role names; "reconstruct" is the fit itself).
JOB_STAGES = {"video": ("background_removal", "multiview", "sds_guidance", "reconstruct"),
              "image": ("image_to_video", "multiview", "sds_guidance", "reconstruct"),
              "prompt": ("text_to_image", "image_to_video", "multiview", "sds_guidance", "reconstruct")}
GB = 1e9


def stage_settings(preset: str):
    """``(GenerationSettings, MultiviewSettings)`` of ``preset``."""
    from backend.pipeline.generate_video import GenerationSettings
    from backend.pipeline.multiview_footage import MultiviewSettings
    from protocol.config import apply_options
    from protocol.presets import stage_overrides

    return (apply_options(GenerationSettings(), stage_overrides(preset, "generation")),
            apply_options(MultiviewSettings(), stage_overrides(preset, "multiview")))


def plan_job(job_type: str, budget, profiles: dict, gen, mv) -> dict:
    """Per-stage plans and the job's estimated maximum for one budget (see the module docstring)."""
    recon = memory.measured_reconstruct_peak_bytes()
    recon_bytes = recon[0] if recon else 0
    rows, peak = [], 0
    for role in JOB_STAGES[job_type]:
        if role == "reconstruct":
            rows.append({"stage": role, "plan": None, "peak_bytes": recon_bytes,
                         "source": recon[1] if recon else "no GPU measurement (reconstruct_gpu.json absent)"})
            peak = max(peak, recon_bytes)
            continue
        settings = memory.settings_for(role, gen, mv, profiles)
        reserved = recon_bytes if role == "sds_guidance" else 0
        plan = memory.plan_for(budget, "cuda", role, settings, reserved_bytes=reserved)
        together = plan.estimate_bytes + reserved
        rows.append({"stage": role, "plan": plan.to_dict(), "describe": plan.describe(),
                     "peak_bytes": together,
                     "source": "ESTIMATE" + (" (+ the reconstruction's measured peak, run at the same time)"
                                             if reserved else "")})
        peak = max(peak, together)
    fits = None if budget is None else all(r["plan"] is None or r["plan"]["fits"] for r in rows)
    unmeasured = [r for r in JOB_STAGES[job_type] if r != "reconstruct" and r not in profiles]
    return {"job_type": job_type, "budget_gb": budget, "stages": rows, "job_peak_bytes": peak, "all_fit": fits,
            "activations_not_measured": unmeasured}


def markdown(results: list[dict], profile_note: str) -> str:
    """The Markdown table of :func:`plan_job` results."""
    lines = ["# VRAM plans (host-side ESTIMATE, not a measurement)", "", profile_note, "",
             "| job | budget | stage | plan | peak GB |", "|---|---|---|---|---|"]
    for res in results:
        budget = "none" if res["budget_gb"] is None else f"{res['budget_gb']:g} GB"
        for row in res["stages"]:
            plan = row.get("describe") or row["source"]
            kind = "" if row["plan"] is not None else " (measured)"
            lines.append(f"| {res['job_type']} | {budget} | {row['stage']} | {plan} | "
                         f"{row['peak_bytes'] / GB:.2f}{kind} |")
        fit = "" if res["all_fit"] is None else (" — fits" if res["all_fit"] else " — does NOT fit")
        if fit and res["activations_not_measured"]:
            fit += " (weights + VAE decode only: activations not measured)"
        lines.append(f"| {res['job_type']} | {budget} | **job max** | | **{res['job_peak_bytes'] / GB:.2f}**{fit} |")
    return "\n".join(lines) + "\n"


def measure(budget: float, steps: int, job_type: str, preset: str) -> int:
    """``--measure``: run each stage of ``job_type`` on CUDA under its plan and record
    ``torch.cuda.max_memory_allocated`` (see the module docstring)."""
    import numpy as np
    import torch

    if not torch.cuda.is_available():
        print("--measure needs a CUDA GPU; none is available here. The plan above is an ESTIMATE.", file=sys.stderr)
        return 3
    try:
        from backend.models.architectures import build_random
    except ImportError as exc:
        print(f"--measure needs backend.models.architectures.build_random ({exc})", file=sys.stderr)
        return 3
    from backend.pipeline.context import JobContext
    from backend.pipeline.generate_video import image_to_frames

    gen, mv = stage_settings(preset)
    profiles = memory.load_profiles()
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (gen.video_height, gen.video_width, 4), dtype=np.uint8)
    image[..., 3] = 255
    rows = []
    for role in JOB_STAGES[job_type]:
        if role == "reconstruct":
            continue
        plan = memory.plan_for(budget, "cuda", role, memory.settings_for(role, gen, mv, profiles))
        model = build_random(role, dtype=plan.torch_dtype, device="cpu")
        memory.apply_plan(model, plan, "cuda")
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        if role == "text_to_image":
            model(prompt="a toy robot", num_inference_steps=steps, guidance_scale=0.0, height=gen.image_size,
                  width=gen.image_size, output_type="np")
        elif role == "image_to_video":
            image_to_frames(image, model, type(gen)(**{**vars(gen), "video_steps": steps}), 320, JobContext(),
                            decode_chunk_size=plan.decode_chunk_size)
        elif role == "multiview":
            model(image[:320, :320], num_inference_steps=steps, guidance_scale=mv.guidance_scale,
                  height=mv.grid_height, width=mv.grid_width)
        elif role == "background_removal":
            model.masks(image[None, ..., :3].repeat(8, 0))
        elif role == "sds_guidance":
            imgs = torch.rand(4, 256, 256, 3, device="cuda", requires_grad=True)
            clip, lat = model.encode_condition(imgs[:1].detach())
            eps = model.eps_fn(clip.expand(4, -1), lat.expand(4, -1, -1, -1), torch.zeros(4, 4, device="cuda"))
            latents = model.encode_images(imgs)
            uncond, cond = eps(latents, torch.tensor(500, device="cuda"))
            (cond - uncond).float().square().mean().backward()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
        rows.append({"stage": role, "plan": plan.to_dict(), "steps": steps, "seconds": time.perf_counter() - start,
                     "cuda_max_allocated_bytes": peak, "estimate_bytes": plan.estimate_bytes,
                     "fits_budget": peak <= budget * GB})
        print(f"{role}: measured {peak / GB:.2f} GB (estimate {plan.estimate_bytes / GB:.2f} GB) "
              f"under {plan.describe()}")
        del model
        torch.cuda.empty_cache()
    name = torch.cuda.get_device_name().lower().replace(" ", "_")
    out = {"measured": "torch.cuda.max_memory_allocated per stage, random weights at published size",
           "device": torch.cuda.get_device_name(), "torch": torch.__version__, "budget_gb": budget, "preset": preset,
           "job_type": job_type, "stages": rows, "job_peak_bytes": max(r["cuda_max_allocated_bytes"] for r in rows),
           "date": time.strftime("%Y-%m-%d")}
    (RESULTS / f"vram_measured_{name}.json").write_text(json.dumps(out, indent=1) + "\n")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budgets", nargs="+", default=["8", "12", "16", "24", "none"])
    p.add_argument("--preset", default="standard")
    p.add_argument("--profile", help="generation benchmark JSON (default benchmarks/results/generation_cpu.json)")
    p.add_argument("--out", default=str(RESULTS / "vram_plan.json"))
    p.add_argument("--measure", action="store_true", help="measure on CUDA (see the module docstring)")
    p.add_argument("--measure-budget", type=float, default=12.0)
    p.add_argument("--measure-job", default="video", choices=sorted(JOB_STAGES))
    p.add_argument("--steps", type=int, default=2)
    args = p.parse_args(argv)
    budgets = [None if b.lower() == "none" else memory.check_budget(float(b)) for b in args.budgets]
    profile_path = Path(args.profile) if args.profile else memory.DEFAULT_PROFILE_PATH
    profiles = memory.load_profiles(profile_path)
    gen, mv = stage_settings(args.preset)
    missing = [r for r in memory.PLANNED_ROLES if r not in profiles]
    note = (f"Activations: {profile_path.name} ({', '.join(sorted(profiles)) or 'none'}); "
            + (f"NOT MEASURED for {', '.join(missing)}: weights and VAE decode only. " if missing else "")
            + f"Preset {args.preset}; usable fraction {memory.USABLE_FRACTION:.0%} of each budget.")
    results = [plan_job(job, b, profiles, gen, mv) for job in JOB_STAGES for b in budgets]
    doc = {"estimate": "host-side ESTIMATE (backend.models.memory), not a measurement", "note": note,
           "preset": args.preset, "profile": str(profile_path), "profile_roles": sorted(profiles),
           "usable_fraction": memory.USABLE_FRACTION, "results": results}
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    table = markdown(results, note)
    Path(args.out).with_suffix(".md").write_text(table)
    print(table)
    return measure(args.measure_budget, args.steps, args.measure_job, args.preset) if args.measure else 0


if __name__ == "__main__":
    sys.exit(main())
