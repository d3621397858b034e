"""CPU contention benchmark: a fit's steps/s alone, beside a second fit, beside Cycles.

Protocol (each fit and each render is its own process, started with a clean OpenMP
environment and explicit thread counts):

- The fit: ``backend.pipeline.reconstruct.reconstruct(footage, cfg, JobContext(),
  device="cpu")`` on the D-NeRF ``jumpingjacks`` training split at 128 px (read with
  :func:`backend.pipeline.ingest.load_footage` from ``--data``, cached as one tensor file in
  a temporary folder, never copied into the repository), the ``standard`` preset with a
  constant workload: no low-resolution phase, no densification (4,000 Gaussians, 4 frames a
  step), no previews. Its ``Trainer.step`` is wrapped to time every step (and, for variants
  with the governor, to call ``govern_threads(step, "cpu")`` before it where the training
  loop does not call it itself yet; variants without it run with ``GEN4D_THREAD_GOVERNOR=0``).
- Measured fit: ``--warmup`` steps are dropped, then it runs ``--steps`` steps (the same
  steps of the same fit in every case: the work per step drifts as the fit learns), or
  ``--max-seconds`` if that comes first. **steps/s** is the median over windows of 5
  consecutive steps of ``5 / window time``; ``mean steps/s`` is steps / time.
- Cases: **alone**; **beside fit**: a second, identical fit process (same variant) that is
  already stepping; **beside Cycles**: a ``bpy`` process rendering the factory-startup
  scene (cube, lamp) with Cycles on the CPU at its default thread count, 64 samples,
  320×240, over and over (an artist pressing F12), already rendering.
- Variants (``VARIANTS``): ``before`` is today's behaviour (every core for torch and
  Numba, OpenMP wait policy unset); ``after`` is the fix, the thread governor
  (:mod:`backend.compute_threads`) called before every step; ``passive`` the alternative
  it was measured against (``OMP_WAIT_POLICY=PASSIVE``). The others isolate causes
  (``--variants``). Alone is measured ``--alone-repeats`` times, variants interleaved.

Writes ``benchmarks/results/cpu_contention.json`` and ``.md`` (``--tag`` renames them).

Usage (hold the machine's CPU lock; the default run, before and after, takes about 5 minutes)::

    flock /work/exp/cpu.lock .venv/bin/python benchmarks/cpu_contention.py
    flock /work/exp/cpu.lock .venv/bin/python benchmarks/cpu_contention.py --tag diagnosis \\
        --variants t2,t2-passive,t2-active,t2-spin1k,t1 --steps 100
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_DATA = Path("/work/shared/datasets/dnerf/jumpingjacks")

#: options on top of the ``standard`` preset: a constant per-step workload.
FIT_OPTIONS = {"optimization.iterations": 10 ** 6, "densification.enabled": False, "data.low_res_factor": 1,
               "output.preview_every_s": 1e9}

#: variant name -> how each fit process is started.
#: ``threads``: torch intra-op threads (and the Numba rasterizer's, which launches with
#: ``min(torch threads, NUMBA_NUM_THREADS)``); ``numba_threads``: force the rasterizer's
#: count instead; ``env``: environment on top of a clean one (no OMP_*/GOMP_*/KMP_*/NUMBA_*
#: threading variables);
#: ``governor``: the thread governor (:class:`backend.compute_threads.ThreadGovernor`).
VARIANTS: dict[str, dict] = {
    "before": {"threads": 2, "env": {}, "governor": False,
               "about": "today: torch and Numba on every core, OpenMP wait policy unset, no governor"},
    "after": {"threads": 2, "env": {}, "governor": True,
              "about": "the fix: ThreadGovernor before every step (every core when the machine is idle, "
                       "one less per core others keep busy), wait policy unset"},
    "passive": {"threads": 2, "env": {"OMP_WAIT_POLICY": "PASSIVE"}, "governor": False,
                "about": "the rejected alternative: OMP_WAIT_POLICY=PASSIVE, no governor"},
    "t2": {"threads": 2, "env": {}, "about": "2 threads, wait policy unset (= before)"},
    "t2-passive": {"threads": 2, "env": {"OMP_WAIT_POLICY": "PASSIVE"}, "about": "2 threads, OMP_WAIT_POLICY=PASSIVE"},
    "t2-active": {"threads": 2, "env": {"OMP_WAIT_POLICY": "ACTIVE"}, "about": "2 threads, OMP_WAIT_POLICY=ACTIVE"},
    "t2-spin1k": {"threads": 2, "env": {"GOMP_SPINCOUNT": "1000"}, "about": "2 threads, GOMP_SPINCOUNT=1000"},
    "t2-workqueue": {"threads": 2, "env": {"NUMBA_THREADING_LAYER": "workqueue"},
                     "about": "2 threads, Numba's workqueue threading layer instead of OpenMP"},
    "after-workqueue": {"threads": 2, "env": {"NUMBA_THREADING_LAYER": "workqueue"}, "governor": True,
                        "about": "the governor with Numba's workqueue threading layer"},
    "t2-numba1": {"threads": 2, "numba_threads": 1, "env": {}, "about": "torch 2 threads, Numba 1"},
    "t1-numba2": {"threads": 1, "numba_threads": 2, "env": {}, "about": "torch 1 thread, Numba 2"},
    "t1-numba2-passive": {"threads": 1, "numba_threads": 2, "env": {"OMP_WAIT_POLICY": "PASSIVE"},
                          "about": "torch 1 thread, Numba 2, OMP_WAIT_POLICY=PASSIVE"},
    "t2-spin10k": {"threads": 2, "env": {"GOMP_SPINCOUNT": "10000"}, "about": "2 threads, GOMP_SPINCOUNT=10000"},
    "t1": {"threads": 1, "env": {}, "about": "torch and Numba 1 thread"},
}

CASES = ("alone", "fit", "cycles")
CASE_LABEL = {"alone": "alone", "fit": "beside a 2nd fit", "cycles": "beside Cycles"}

#: variables removed from every child's environment before its variant's are added.
_THREAD_ENV_PREFIXES = ("OMP_", "GOMP_", "KMP_", "MKL_", "NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER",
                        "GEN4D_THREAD_GOVERNOR")

WINDOW = 5


# --------------------------------------------------------------------------- children


def _openmp_libraries() -> list[str]:
    """OpenMP / TBB shared libraries mapped into this process (from /proc/self/maps)."""
    libs = set()
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1] if len(line.split()) >= 6 else ""
            name = os.path.basename(path)
            if any(k in name for k in ("gomp", "iomp", "libomp", "tbb", "omppool", "workqueue")):
                libs.add(path.replace(str(ROOT) + "/", "").replace(sys.prefix + "/", "<venv>/"))
    return sorted(libs)


class _Done(Exception):
    pass


def child_fit(spec: dict) -> None:
    """One fit process: print ``READY`` once warm, and (primary) one JSON line at the end."""
    variant = spec["variant"]
    import torch

    torch.set_num_threads(variant["threads"])
    from backend import compute_threads
    from backend.pipeline.context import JobContext
    from backend.pipeline.reconstruct import reconstruct
    from backend.pipeline.reconstruct import stage as stage_module
    from backend.pipeline.reconstruct.train import Trainer
    from backend.render import numba_rasterizer
    from protocol.presets import reconstruct_config

    if variant.get("numba_threads"):
        numba_rasterizer._threads = lambda: variant["numba_threads"]
    footage = torch.load(spec["footage"], weights_only=False)
    cfg = reconstruct_config("standard", FIT_OPTIONS)
    stamps: list[float] = []
    cpu: list[float] = []  # this process's CPU seconds at the start and end of the measurement
    machine: list[float] = []  # the machine's busy CPU seconds (/proc/stat) at the same times
    threads_used: list[int] = []
    primary, warmup = spec["primary"], spec["warmup"]
    steps, max_seconds = spec["steps"], spec["max_seconds"]
    original = Trainer.step
    # Where the training loop already calls govern_threads (it does once the hook is merged),
    # the benchmark does not call it again; variants without the governor turn it off
    # through GEN4D_THREAD_GOVERNOR=0 (see _child_env).
    loop_has_hook = hasattr(stage_module, "govern_threads")

    def timed_step(self, step: int) -> float:
        if variant.get("governor") and not loop_has_hook:
            compute_threads.govern_threads(step, "cpu")  # the training loop's one-line hook
        elif variant.get("numba_threads"):
            # Numba's OpenMP layer calls omp_set_num_threads(NUMBA_NUM_THREADS) on its first
            # launch, and that binds to torch's libgomp: set torch's count again.
            torch.set_num_threads(variant["threads"])
        value = original(self, step)
        stamps.append(time.time())
        threads_used.append(torch.get_num_threads())
        if len(stamps) == warmup + 1:
            cpu.append(sum(os.times()[:2]))
            machine.append(compute_threads.read_proc_stat().busy_s)
            print("READY", flush=True)
        if primary and len(stamps) > warmup + 1:
            elapsed = stamps[-1] - stamps[warmup]
            if len(stamps) - 1 - warmup >= steps or elapsed >= max_seconds:
                raise _Done
        return value

    Trainer.step = timed_step
    try:
        reconstruct(footage, cfg, JobContext(), device="cpu")
    except _Done:
        cpu.append(sum(os.times()[:2]))
        machine.append(compute_threads.read_proc_stat().busy_s)
    if primary:
        import numba

        governor = getattr(compute_threads._PER_THREAD, "governor", None)  # the hook's governor

        print(json.dumps({"stamps": stamps[warmup:], "threads_used": threads_used[warmup:],
                          "cpu_seconds": cpu[-1] - cpu[0], "hook_in_training_loop": loop_has_hook,
                          "other_cpu_seconds": (machine[-1] - machine[0]) - (cpu[-1] - cpu[0]),
                          "governor_history": governor.history if governor else None,
                          "torch_threads_start": variant["threads"],
                          "numba_threading_layer": numba.threading_layer(),
                          "openmp_libraries": _openmp_libraries(),
                          "env": {k: v for k, v in os.environ.items() if k.startswith(_THREAD_ENV_PREFIXES)}}),
              flush=True)


def child_cycles(spec: dict) -> None:
    """Render the factory scene with Cycles on the CPU until killed; one line per render."""
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=False)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = spec.get("samples", 64)
    scene.cycles.use_adaptive_sampling = False
    scene.cycles.use_denoising = False
    scene.render.resolution_x, scene.render.resolution_y = 320, 240
    scene.render.resolution_percentage = 100
    scene.render.threads_mode = "AUTO"  # an artist's default: every core
    scene.render.filepath = os.path.join(spec["tmp"], "cycles.png")
    print(f"THREADS {scene.render.threads}", flush=True)
    while True:
        bpy.ops.render.render(write_still=False)
        print(f"RENDER {time.time():.4f}", flush=True)


# --------------------------------------------------------------------------- parent


def _child_env(variant: dict | None) -> dict:
    """A clean environment (no thread variables) plus ``variant``'s; None: Cycles's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_THREAD_ENV_PREFIXES)}
    if variant is not None:
        env.update(variant.get("env", {}))
        if not variant.get("governor"):
            env["GEN4D_THREAD_GOVERNOR"] = "0"
        env["NUMBA_NUM_THREADS"] = str(max(variant["threads"], variant.get("numba_threads") or 0))
    env["PYTHONPATH"] = str(ROOT)
    return env


def _spawn(kind: str, spec: dict, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-u", str(Path(__file__).resolve()), "--child", kind,
                             "--spec", json.dumps(spec)], env=env, cwd=str(ROOT), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)


def _wait_line(proc: subprocess.Popen, prefix: str, timeout_s: float, lines: list[str]) -> str:
    """Read ``proc``'s stdout until a line starts with ``prefix``; every line goes to ``lines``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"child exited ({proc.wait()}) before {prefix!r}")
        lines.append(line.strip())
        if line.startswith(prefix):
            return line.strip()
    raise RuntimeError(f"no {prefix!r} from the child within {timeout_s:.0f} s")


def _stop(proc: subprocess.Popen, lines: list[str]) -> None:
    proc.terminate()
    try:
        out, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    lines.extend(x.strip() for x in (out or "").splitlines())


def window_rates(stamps: list[float], window: int = WINDOW) -> list[float]:
    """Steps/s of consecutive, non-overlapping windows of ``window`` steps.

    Args:
        stamps: wall-clock end time (s) of each step, ascending; ``stamps[0]`` is the end
            of the last warm-up step (the start of the measurement).
        window: steps per window; fewer steps than that give one window of all of them.

    Returns:
        One rate per window (steps / s).
    """
    n = len(stamps) - 1
    if n < 1:
        return []
    w = min(window, n)
    return [w / max(stamps[i + w] - stamps[i], 1e-9) for i in range(0, n - w + 1, w)]


def measure(case: str, variant_name: str, args, footage: Path, tmp: Path, cycles_alone: float | None) -> dict:
    """Run one (case, variant): start the partner, wait until it works, time the primary fit."""
    import numpy as np

    variant = VARIANTS[variant_name]
    env = _child_env(variant)
    fit_spec = {"variant": variant, "footage": str(footage), "warmup": args.warmup, "steps": args.steps,
                "max_seconds": args.max_seconds}
    partner, partner_lines = None, []
    if case == "fit":
        partner = _spawn("fit", {**fit_spec, "primary": False}, env)
        _wait_line(partner, "READY", 300, partner_lines)
    elif case == "cycles":
        partner = _spawn("cycles", {"tmp": str(tmp)}, _child_env(None))
        _wait_line(partner, "RENDER", 300, partner_lines)
    primary_lines: list[str] = []
    try:
        proc = _spawn("fit", {**fit_spec, "primary": True}, env)
        _wait_line(proc, "{", args.max_seconds + 300, primary_lines)
        proc.wait(timeout=60)
    finally:
        if partner is not None:
            _stop(partner, partner_lines)
    result = json.loads(primary_lines[-1])
    stamps = result.pop("stamps")
    rates = window_rates(stamps)
    t0, t1 = stamps[0], stamps[-1]
    row = {"case": case, "variant": variant_name, "steps": len(stamps) - 1, "seconds": t1 - t0,
           "steps_per_s": float(np.median(rates)) if rates else 0.0,
           "mean_steps_per_s": (len(stamps) - 1) / max(t1 - t0, 1e-9), "capped": len(stamps) - 1 < args.steps,
           "window_steps_per_s": [round(r, 3) for r in rates], **result}
    row["cpu_cores_used"] = row["cpu_seconds"] / max(t1 - t0, 1e-9)
    # Cores every other process used during the measurement: the partner's (or Cycles's)
    # share beside one, and background load that spoils the measurement when alone.
    row["other_cores_during"] = max(0.0, row.pop("other_cpu_seconds")) / max(t1 - t0, 1e-9)
    row["cpu_ms_per_step"] = 1000 * row["cpu_seconds"] / max(row["steps"], 1)
    row["threads_used"] = sorted(set(row["threads_used"]))
    if case == "cycles":
        renders = [float(x.split()[1]) for x in partner_lines if x.startswith("RENDER")]
        inside = [t for t in renders if t0 <= t <= t1]
        row["cycles_threads"] = next((int(x.split()[1]) for x in partner_lines if x.startswith("THREADS")), None)
        row["cycles_renders_per_s"] = (len(inside) - 1) / (inside[-1] - inside[0]) if len(inside) >= 2 else None
        row["cycles_alone_renders_per_s"] = cycles_alone
    return row


def background_cores(seconds: float = 1.0) -> float:
    """Cores other processes kept busy over ``seconds`` (``/proc/stat``, this process excluded)."""
    from backend.compute_threads import process_cpu_seconds, read_proc_stat

    cpu0, own0, t0 = read_proc_stat(), process_cpu_seconds(), time.monotonic()
    time.sleep(seconds)
    cpu1, own1, t1 = read_proc_stat(), process_cpu_seconds(), time.monotonic()
    return max(0.0, (cpu1.busy_s - cpu0.busy_s - (own1 - own0)) / (t1 - t0))


def _process_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used, from ``/proc/<pid>/stat``."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cycles_alone_rate(tmp: Path, seconds: float) -> tuple[float, float]:
    """Renders per second of the Cycles process with the machine to itself.

    Returns:
        ``(renders/s, cores the other processes used meanwhile)``.
    """
    from backend.compute_threads import process_cpu_seconds, read_proc_stat

    lines: list[str] = []
    proc = _spawn("cycles", {"tmp": str(tmp)}, _child_env(None))
    try:
        _wait_line(proc, "RENDER", 300, lines)
        busy0, mine0, t0 = read_proc_stat().busy_s, _process_cpu_seconds(proc.pid) + process_cpu_seconds(), \
            time.monotonic()
        first = float(lines[-1].split()[1])
        last = first
        n = 0
        while last - first < seconds:
            last = float(_wait_line(proc, "RENDER", 120, lines).split()[1])
            n += 1
        busy1, mine1, t1 = read_proc_stat().busy_s, _process_cpu_seconds(proc.pid) + process_cpu_seconds(), \
            time.monotonic()
    finally:
        _stop(proc, lines)
    return n / (last - first), max(0.0, (busy1 - busy0) - (mine1 - mine0)) / (t1 - t0)


def prepare_footage(data: Path, size: int, tmp: Path) -> Path:
    """Load the training split at ``size`` px once; saved in ``tmp`` for the children."""
    import torch

    from backend.pipeline.ingest import load_footage

    footage = load_footage(data, "train", size)
    path = tmp / "footage.pt"
    torch.save(footage, path)
    return path


def markdown(rows: list[dict], meta: dict) -> str:
    """The results as a Markdown table (one row per variant x case)."""
    alone = {r["variant"]: r for r in rows if r["case"] == "alone"}
    out = [f"# CPU contention ({meta['machine']}, {meta['n_cpus']} CPUs, fit: {meta['fit']})", "",
           "steps/s: median over windows of 5 steps; mean: steps / time (lower when a fit runs in bursts). "
           "× alone: against the same variant alone (alone: median of its repeats, listed). "
           "other cores: CPU the other processes used during the measurement.", "",
           "| variant | case | steps/s | × alone | mean steps/s | × alone (mean) | threads used | CPU ms/step | "
           "other cores | Cycles renders/s (alone) |",
           "| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |"]
    for r in rows:
        a = alone.get(r["variant"])
        ratio = r["steps_per_s"] / a["steps_per_s"] if a else float("nan")
        mean_ratio = r["mean_steps_per_s"] / a["mean_steps_per_s"] if a else float("nan")
        cyc = ""
        if r["case"] == "cycles" and r.get("cycles_renders_per_s") is not None:
            cyc = f"{r['cycles_renders_per_s']:.3f} ({r['cycles_alone_renders_per_s']:.3f})"
        reps = r.get("alone_repeats_steps_per_s")
        speed = f"{r['steps_per_s']:.2f}" + (f" ({', '.join(f'{x:.1f}' for x in reps)})" if reps else "")
        out.append(f"| {r['variant']} | {CASE_LABEL[r['case']]} | {speed} | {ratio:.2f} | "
                   f"{r['mean_steps_per_s']:.2f} | {mean_ratio:.2f} | {','.join(map(str, r['threads_used']))} | "
                   f"{r['cpu_ms_per_step']:.0f} | {r.get('other_cores_during', float('nan')):.2f} | {cyc} |")
    out += ["", "Variants:", ""] + [f"- `{v}`: {VARIANTS[v]['about']}" for v in dict.fromkeys(r["variant"]
                                                                                            for r in rows)]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Parse the command line; run the children or the whole benchmark."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default="before,after", help=f"comma list of {', '.join(VARIANTS)}")
    parser.add_argument("--cases", default=",".join(CASES), help="comma list of alone, fit, cycles")
    parser.add_argument("--steps", type=int, default=150, help="measured steps of each fit")
    parser.add_argument("--max-seconds", type=float, default=40.0, help="longest measurement of one fit")
    parser.add_argument("--warmup", type=int, default=5, help="steps dropped before the measurement")
    parser.add_argument("--alone-repeats", type=int, default=3, help="alone measurements per variant (median)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="a D-NeRF scene folder (read only)")
    parser.add_argument("--size", type=int, default=128, help="training image size (px)")
    parser.add_argument("--tag", default="cpu_contention", help="output name in benchmarks/results/")
    parser.add_argument("--max-background", type=float, default=0.3,
                        help="refuse to start when other processes keep more cores than this busy")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--child", choices=("fit", "cycles"), help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child == "fit":
        child_fit(json.loads(args.spec))
        return 0
    if args.child == "cycles":
        child_cycles(json.loads(args.spec))
        return 0
    variants, cases = args.variants.split(","), args.cases.split(",")
    for v in variants:
        if v not in VARIANTS:
            parser.error(f"unknown variant {v!r}")
    for c in cases:
        if c not in CASES:
            parser.error(f"unknown case {c!r}")
    busy = background_cores(2.0)
    if busy > args.max_background:
        print(f"the machine is busy: other processes use {busy:.2f} cores (> --max-background "
              f"{args.max_background}); the measurements would be meaningless", file=sys.stderr)
        return 3
    started = time.perf_counter()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="gen4d-contention-") as tmp_name:
        tmp = Path(tmp_name)
        footage = prepare_footage(args.data, args.size, tmp)
        # Compile (or load) the rasterizer's Numba cache before anything is timed.
        warm = _spawn("fit", {"variant": VARIANTS["t1"], "footage": str(footage), "warmup": 1, "steps": 1,
                              "max_seconds": 0, "primary": True}, _child_env(VARIANTS["t1"]))
        warm.communicate(timeout=600)
        cycles_alone, cycles_alone_others = cycles_alone_rate(tmp, 10.0) if "cycles" in cases else (None, None)
        if cycles_alone is not None:
            print(f"Cycles alone: {cycles_alone:.3f} renders/s (other processes: {cycles_alone_others:.2f} cores)",
                  flush=True)
        # Alone: repeated, the variants interleaved (A B A B ...), so a slow minute of the
        # machine does not land on one variant; the row keeps the median repeat.
        alone: dict[str, list[dict]] = {v: [] for v in variants}
        plan = [("alone", v) for _ in range(args.alone_repeats) for v in variants] if "alone" in cases else []
        plan += [(c, v) for v in variants for c in cases if c != "alone"]
        for case, variant in plan:
            busy = background_cores(0.5)
            row = measure(case, variant, args, footage, tmp, cycles_alone)
            row["background_cores_before"] = busy
            print(f"{variant:14s} {CASE_LABEL[case]:18s} {row['steps_per_s']:6.2f} steps/s "
                  f"(mean {row['mean_steps_per_s']:.2f}, {row['steps']} steps, threads "
                  f"{row['threads_used']}, {row['cpu_cores_used']:.2f} cores busy)", flush=True)
            if case == "alone" and row["other_cores_during"] > args.max_background:
                print(f"  (other processes used {row['other_cores_during']:.2f} cores during it: spoiled)",
                      flush=True)
            if case == "alone":
                alone[variant].append(row)
                if len(alone[variant]) == args.alone_repeats:
                    reps = sorted(alone[variant], key=lambda r: r["steps_per_s"])
                    best = dict(reps[len(reps) // 2])
                    best["alone_repeats_steps_per_s"] = [r["steps_per_s"] for r in alone[variant]]
                    rows.append(best)
            else:
                rows.append(row)
        rows.sort(key=lambda r: (variants.index(r["variant"]), cases.index(r["case"])))
    meta = {"machine": platform.processor() or platform.machine(), "n_cpus": os.cpu_count(),
            "fit": f"D-NeRF {args.data.name} train at {args.size} px, standard preset + {FIT_OPTIONS}",
            "steps_per_case": args.steps, "max_seconds_per_case": args.max_seconds, "warmup_steps": args.warmup,
            "window_steps": WINDOW, "cycles_alone_renders_per_s": cycles_alone,
            "cycles_alone_other_cores": cycles_alone_others,
            "wall_s": time.perf_counter() - started}
    for row in rows:
        a = next((r for r in rows if r["variant"] == row["variant"] and r["case"] == "alone"), None)
        row["ratio_to_alone"] = row["steps_per_s"] / a["steps_per_s"] if a else None
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.tag}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    table = markdown(rows, meta)
    (args.out / f"{args.tag}.md").write_text(table)
    print(table)
    print(f"wall time {meta['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
