"""Peak host memory of one VAE decode, per output pixel: the constant behind
``backend.models.memory.DECODE_ELEMENTS_PER_PIXEL``.

Builds the decoder at its real channel widths with random weights (``AutoencoderKL`` of the
SD family, ``AutoencoderKLTemporalDecoder`` of SVD; block widths 128/256/512/512, two layers
per block, 4 latent channels), decodes one batch in fp32 on the CPU in this process, and
reports the growth of peak RSS over the RSS before decoding (``ru_maxrss``), divided by 4
bytes × output pixels × images. A measurement of host memory on the CPU, not of a GPU.

Usage: ``python benchmarks/vae_decode_peak.py kl 512 1`` (kind, side px, images/frames);
``--all`` runs the three cases used for the constant, each in its own subprocess, and writes
``benchmarks/results/vae_decode_peak_cpu.json``.
"""

from __future__ import annotations

import gc
import json
import resource
import subprocess
import sys
from pathlib import Path

CASES = (("kl", 512, 1), ("kl", 768, 1), ("tvd", 384, 2))


def measure(kind: str, side: int, frames: int) -> dict:
    """One decode; returns the measured numbers (bytes, elements per output pixel)."""
    import psutil
    import torch
    from diffusers import AutoencoderKL, AutoencoderKLTemporalDecoder

    torch.set_num_threads(2)
    widths = dict(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                  layers_per_block=2, latent_channels=4)
    if kind == "kl":
        vae = AutoencoderKL(up_block_types=("UpDecoderBlock2D",) * 4, **widths).eval()
    else:
        vae = AutoencoderKLTemporalDecoder(**widths).eval()
    z = torch.randn(frames, 4, side // 8, side // 8)
    gc.collect()
    before = psutil.Process().memory_info().rss
    with torch.no_grad():
        vae.decode(z).sample if kind == "kl" else vae.decode(z, num_frames=frames).sample
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"kind": {"kl": "AutoencoderKL", "tvd": "AutoencoderKLTemporalDecoder"}[kind], "side_px": side,
            "images": frames, "params": sum(p.numel() for p in vae.parameters()), "rss_before_bytes": before,
            "peak_rss_bytes": peak, "decode_extra_bytes": peak - before,
            "elements_per_pixel": (peak - before) / 4 / (side * side * frames)}


def main() -> int:
    if sys.argv[1:] == ["--all"]:
        rows = []
        for kind, side, frames in CASES:
            out = subprocess.run([sys.executable, __file__, kind, str(side), str(frames)], check=True,
                                 capture_output=True, text=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            print(rows[-1])
        path = Path(__file__).parent / "results" / "vae_decode_peak_cpu.json"
        path.write_text(json.dumps({"measured": "host RSS growth of one fp32 CPU decode (not GPU memory)",
                                    "threads": 2, "rows": rows}, indent=1) + "\n")
        return 0
    kind, side, frames = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    print(json.dumps(measure(kind, side, frames)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
