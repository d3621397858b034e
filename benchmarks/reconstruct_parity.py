"""Refactor guard: fit a tiny synthetic scene under several reconstruct configurations and
dump every step's loss and the final parameters, so two versions of the reconstruct stage
can be compared bit for bit.

    python benchmarks/reconstruct_parity.py dump OUT_DIR      # fit every case, write OUT_DIR/<case>.pt
    python benchmarks/reconstruct_parity.py compare A_DIR B_DIR

Each case is written as the old flat options (before the nested
:class:`protocol.config.ReconstructConfig`); on a tree that has :mod:`protocol.presets`
they are translated to the nested names, so the same script runs on both sides of the
change. Every case starts from the ``standard`` (old ``cpu``) preset with 60 steps, 300
initial Gaussians, 32 px images and a batch of 2 (both resolution phases run).
"""

from __future__ import annotations

import math
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

BASE = {"iterations": 60, "n_init": 300, "max_image_size": 32, "batch_size": 2, "preview_every_s": 1e9}

CASES: dict[str, dict] = {
    "trajectory": {},
    "static": {"motion": "static"},
    "hexplane": {"representation": "hexplane", "hexplane_coarse_fraction": 0.3},
    "stag4d": {"densify_strategy": "stag4d", "densify_start": 10, "densify_every": 10},
    "confidence": {"confidence_weighting": True},
    "rigidity": {"rigidity_weight": 0.5},
    "hexplane_rigidity": {"representation": "hexplane", "rigidity_weight": 0.5},
    "scale_ratio": {"max_scale_ratio": 7.5},
    "scale_ratio_tight": {"max_scale_ratio": 1.2},  # 7.5 never binds in 60 steps
    "densify": {"densify_start": 10, "densify_every": 10, "grow_grad2d": 2e-5},
    "sds": {"sds_weight": 1.0, "sds_every": 3, "iterations": 12},
}

# old flat name -> nested dotted path (names the nested schema does not resolve by itself)
_NESTED = {"densify": "densification.enabled", "densify_strategy": "densification.strategy",
           "densify_start": "densification.start", "densify_every": "densification.every",
           "densify_stop_fraction": "densification.stop_fraction",
           "hexplane_coarse_fraction": "model.hexplane.coarse_fraction"}


def make_config(options: dict):
    """The config of one case on whichever side of the refactor this tree is."""
    opts = {**BASE, **options}
    try:
        from protocol.presets import reconstruct_config
    except ImportError:
        from backend.pipeline.reconstruct import ReconstructConfig

        return ReconstructConfig.from_options("cpu", opts)
    nested = {}
    for key, value in opts.items():
        if key == "motion":
            if value == "static":
                nested["model.representation"] = "static"
            continue
        nested[_NESTED.get(key, key)] = value
    return reconstruct_config("standard", nested)


def _guidance(folder: Path):
    from tests.helpers.tiny_models import load_tiny_through_registry, save_tiny_zero123_guidance

    return load_tiny_through_registry("sds_guidance", save_tiny_zero123_guidance, folder)


def dump(out_dir: Path, only: list[str] | None = None) -> None:
    """Fit every case (or ``only``) and save ``{losses, stats, state}`` per case."""
    from backend.pipeline.context import JobContext
    from backend.pipeline.ingest import load_footage
    from backend.pipeline.reconstruct import reconstruct
    from tests.helpers.footage import make_tiny_footage

    torch.set_num_threads(1)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        footage = load_footage(make_tiny_footage(Path(tmp) / "f", n_cams=4, n_times=3, size=32), "train")
        for name, options in CASES.items():
            if only and name not in only:
                continue
            cfg = make_config(options)
            losses = []
            ctx = JobContext(min_interval_s=0.0)
            ctx.on_progress = lambda e: losses.append(e.loss) if e.loss is not None else None
            guidance = _guidance(Path(tmp) / "models") if options.get("sds_weight") else None
            model, stats = reconstruct(footage, cfg, ctx, guidance=guidance)
            stats = {k: v for k, v in stats.items() if k not in ("seconds", "it_per_s")}
            torch.save({"losses": losses, "stats": stats, "state": model.state()}, out_dir / f"{name}.pt")
            print(f"{name:18s} N={model.num_gaussians:5d} final_loss={stats['final_loss']:.8f}", flush=True)


def _max_diff(a, b) -> float:
    if a.shape != b.shape:
        return math.inf
    if a.numel() == 0:
        return 0.0
    return float((a.double() - b.double()).abs().max())


def _tensors(state: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in state.items():
        if isinstance(v, dict):
            out.update(_tensors(v, f"{prefix}{k}."))
        elif isinstance(v, torch.Tensor):
            out[prefix + k] = v
    return out


def compare(a_dir: Path, b_dir: Path) -> bool:
    """Print, per case, whether losses and every saved tensor are identical; True if all are."""
    ok = True
    for name in CASES:
        pa, pb = a_dir / f"{name}.pt", b_dir / f"{name}.pt"
        if not (pa.exists() and pb.exists()):
            print(f"{name:18s} missing")
            ok = False
            continue
        a, b = torch.load(pa, weights_only=False), torch.load(pb, weights_only=False)
        same_losses = a["losses"] == b["losses"]
        same_stats = a["stats"] == b["stats"]
        ta, tb = _tensors(a["state"]), _tensors(b["state"])
        diffs = {k: _max_diff(ta[k], tb[k]) for k in ta if k in tb}
        missing = sorted(set(ta) ^ set(tb))
        worst = max(diffs.values(), default=0.0)
        bitwise = same_losses and same_stats and worst == 0.0 and not missing
        ok &= bitwise
        print(f"{name:18s} {'IDENTICAL' if bitwise else 'DIFFERENT'}  losses={'same' if same_losses else 'differ'} "
              f"stats={'same' if same_stats else 'differ'} max|dparam|={worst:.3g} "
              f"steps={len(a['losses'])}{' missing ' + str(missing) if missing else ''}")
    return ok


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "dump":
        dump(Path(sys.argv[2]), sys.argv[3:] or None)
    elif len(sys.argv) == 4 and sys.argv[1] == "compare":
        sys.exit(0 if compare(Path(sys.argv[2]), Path(sys.argv[3])) else 1)
    else:
        print(__doc__)
        sys.exit(2)
