"""The D-NeRF benchmark's reader and report (benchmarks/dnerf_data.py, benchmarks/dnerf.py):
400 px is D-NeRF's INTER_AREA resize of the straight-alpha RGBA, and the table carries the
published anchors beside the measured rows."""

import json
import math

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from benchmarks import dnerf
from benchmarks.dnerf_data import DEFAULT_ROOT, SCENES, load_split, on_white


def _scene(tmp_path, size=8):
    rng = np.random.default_rng(0)
    (tmp_path / "train").mkdir()
    frames = []
    for i in range(2):
        img = rng.integers(0, 256, (size, size, 4), dtype=np.uint8)
        iio.imwrite(tmp_path / "train" / f"r_{i:03d}.png", img)
        c2w = np.eye(4)
        c2w[2, 3] = 4.0
        frames.append({"file_path": f"./train/r_{i:03d}", "transform_matrix": c2w.tolist(), "time": i / 1.0})
    (tmp_path / "transforms_train.json").write_text(json.dumps({"camera_angle_x": 0.69, "frames": frames}))
    return tmp_path


def test_half_resolution_is_area_average_of_straight_rgba(tmp_path):
    scene = _scene(tmp_path)
    full = load_split(scene, "train", 8)
    half = load_split(scene, "train", 4)
    # INTER_AREA at exactly 1/2 is the mean of each 2x2 block, of straight (not premultiplied) values
    expect = full.images.reshape(2, 4, 2, 4, 2, 4).mean(dim=(2, 4))
    torch.testing.assert_close(half.images, expect, atol=1e-6, rtol=0)
    assert half.Ks[0, 0, 0].item() == pytest.approx(full.Ks[0, 0, 0].item() / 2)
    assert half.Ks[0, 0, 2].item() == pytest.approx(2.0)
    torch.testing.assert_close(half.c2w[0, 2, 3], torch.tensor(4.0))
    torch.testing.assert_close(half.times, torch.tensor([0.0, 1.0]))
    # ground truth on white: rgb·a + (1 − a)
    px = half.images[0, 0, 0]
    torch.testing.assert_close(on_white(px), px[:3] * px[3] + 1 - px[3])


def test_table_has_rows_mean_and_published_anchors():
    rows = [{"scene": s, "resolution": 400, "psnr": p, "ssim": 0.95, "psnr_object": 20.0, "train_seconds": 60.0,
             "it_per_s": 5.0, "peak_mem_mb": 1000.0, "n_gaussians": 100, "model_mb": 1.0, "iterations": 300,
             "planned_iterations": planned}
            for s, p, planned in (("lego", 25.0, 300), ("hook", 31.0, 500))]
    table = dnerf.markdown_table(rows)
    assert "| 60 | 300 | 5.00 |" in table and "| 60 | 300 of 500 | 5.00 |" in table  # a time limit shows
    assert "| **mean of 2** | | **28.00** |" in table
    assert "| lego | 400 | 25.00 |" in table and "21.64" in table  # D-NeRF's own lego figure beside ours
    assert "| 4DGaussians | 800 | 34.05 |" in table
    assert math.isclose(np.mean(list(dnerf.DNERF_PER_SCENE.values())), 30.43, abs_tol=0.01)


@pytest.mark.skipif(not (DEFAULT_ROOT / "lego" / "transforms_test.json").is_file(), reason="no D-NeRF data beside the checkout")
def test_real_scene_reads_at_half_resolution():
    test = load_split(DEFAULT_ROOT / "lego", "test", 400)
    assert test.images.shape == (20, 400, 400, 4) and set(SCENES) >= {"lego"}
    assert 0.0 <= float(test.times.min()) and float(test.times.max()) <= 1.0
    # a D-NeRF image is an object on transparency: some pixels opaque, most empty
    alpha = test.images[..., 3]
    assert 0.02 < float((alpha > 0.5).float().mean()) < 0.6


def test_sigterm_to_the_benchmark_ends_its_scene_fit(tmp_path):
    """A killed benchmark must not leave its spawned fit holding the cores (that spoils the
    next timing on the machine)."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    script = ("import multiprocessing, sys, time\n"
              "from benchmarks import dnerf\n"
              "if __name__ == '__main__':\n"
              "    dnerf._stop_fits_on_sigterm()\n"
              "    child = multiprocessing.get_context('spawn').Process(target=time.sleep, args=(60,))\n"
              "    child.start()\n"
              "    print(child.pid, flush=True)\n"
              "    child.join()\n")
    (tmp_path / "bench.py").write_text(script)
    proc = subprocess.Popen([sys.executable, str(tmp_path / "bench.py")], cwd=root, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(root)})
    child = int(proc.stdout.readline())
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    deadline = time.monotonic() + 10
    stat = Path(f"/proc/{child}/stat")
    while time.monotonic() < deadline:
        try:
            if stat.read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                break  # dead, waiting to be reaped
        except (FileNotFoundError, ProcessLookupError):
            break
        time.sleep(0.1)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail("the spawned child outlived the benchmark")
