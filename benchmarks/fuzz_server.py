"""Fuzz a real backend subprocess with N messages (issue 16 item 7).

Starts ``python -m backend serve`` on a free loopback port with a fresh data folder
(:class:`tests.helpers.backend_proc.BackendProcess`), then sends ``--messages`` messages
from the generator shared with ``tests/backend/test_fuzz.py``
(:mod:`tests.helpers.fuzz_messages`: random frames, bad signatures, malformed and signed
headers, wrong field types, bad uploads and specs, random job ids, very many buffers, and
a few valid requests), one at a time, each waiting for its reply. After every ``--batch``
messages it checks that a valid ``ping`` through a fresh client is answered within
``--ping-timeout`` seconds, that the process is alive, and samples its RSS (psutil).

The server runs the real pipeline (the few valid ``submit``\\ s are tiny jobs without files,
which fail at ingest). It is started with ``OMP_NUM_THREADS=1`` (and the MKL/OpenBLAS
equivalents) so the fuzz does not compete with itself for the cores.

Reports crashes (process exited), hangs (ping not answered, or a message with no reply),
replies by type / error code, invalid messages answered with a success, error replies
holding a traceback or the data folder, ERROR lines in the server log, RSS at start / max /
end, and messages/s. Writes ``benchmarks/results/fuzz_server.json`` (``--out``); on a
crash or hang also the last batch of messages as a reproducer,
``benchmarks/results/fuzz_server_repro.json``, which :func:`tests.helpers.fuzz_messages.replay`
sends again.

Usage (hold the CPU lock)::

    flock /work/exp/cpu.lock .venv/bin/python benchmarks/fuzz_server.py
    flock /work/exp/cpu.lock .venv/bin/python benchmarks/fuzz_server.py --messages 5000 --seed 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers.backend_proc import BackendProcess  # noqa: E402
from tests.helpers.fuzz_messages import FuzzDriver, FuzzGenerator, reproducer  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
#: thread counts for the server subprocess.
THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
              "NUMBA_NUM_THREADS": "1"}


def rss_bytes(pid: int) -> int:
    """Resident set size of a process in bytes: psutil if installed, else ``/proc/<pid>/status``."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        return psutil.Process(pid).memory_info().rss
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise OSError(f"no VmRSS for pid {pid}")


def main(argv=None) -> int:
    """Run the fuzz; return 0 when the server survived everything, 1 otherwise."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=100_000, help="fuzz messages to send")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=200, help="messages between liveness checks")
    ap.add_argument("--reply-timeout", type=float, default=5.0, help="seconds to wait for one reply")
    ap.add_argument("--ping-timeout", type=float, default=5.0, help="seconds the after-batch ping may take")
    ap.add_argument("--valid-submit-every", type=int, default=200,
                    help="about one message in this many is a valid tiny submit (0: none)")
    ap.add_argument("--out", type=Path, default=RESULTS / "fuzz_server.json")
    ap.add_argument("--keep-data", action="store_true", help="keep the server's data folder")
    args = ap.parse_args(argv)

    data_dir = Path(tempfile.mkdtemp(prefix="gen4d-fuzz-")) / "data"
    server = BackendProcess(data_dir, extra_env=THREAD_ENV)
    pid = server.proc.pid
    rss_samples: list[tuple[int, int]] = [(0, rss_bytes(pid))]
    driver = FuzzDriver(server.address, server.key, forbidden=[str(data_dir), str(data_dir.resolve())],
                        reply_timeout_s=args.reply_timeout, ping_timeout_s=args.ping_timeout, keep=args.batch)
    crash = {}

    def after_batch(stats):
        code = server.proc.poll()
        if code is not None:
            crash["exit_code"] = code
            return f"server process exited with code {code} after message {stats.sent}"
        rss_samples.append((stats.sent, rss_bytes(pid)))
        if stats.batches % 50 == 0:
            print(f"  {stats.sent} messages, RSS {rss_samples[-1][1] / 2**20:.1f} MiB, "
                  f"{time.monotonic() - t0:.0f} s", flush=True)
        return None

    gen = FuzzGenerator(server.key, seed=args.seed, valid_submit_every=args.valid_submit_every)
    print(f"fuzzing {server.address} (pid {pid}, data {data_dir}) with {args.messages} messages, "
          f"seed {args.seed}, batch {args.batch}", flush=True)
    t0 = time.monotonic()
    try:
        stats = driver.run(gen, args.messages, batch=args.batch, after_batch=after_batch)
    finally:
        elapsed = time.monotonic() - t0
        recent = list(driver.recent)
        driver.close()
    alive = server.proc.poll() is None
    if alive:
        rss_samples.append((stats.sent, rss_bytes(pid)))
    exit_code = server.stop()
    log = server.log_text()
    error_lines = [ln for ln in log.splitlines() if " ERROR " in ln or " CRITICAL " in ln]
    if not args.keep_data:
        shutil.rmtree(data_dir.parent, ignore_errors=True)

    hangs = stats.ping_failures + stats.no_reply
    crashed = bool(crash) or not alive
    rss = [r for _, r in rss_samples]
    result = {
        "benchmark": "fuzz_server",
        "command": "python benchmarks/fuzz_server.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "server": "python -m backend serve (real pipeline), " + ", ".join(f"{k}={v}" for k, v in THREAD_ENV.items()),
        "seed": args.seed, "batch": args.batch, "messages_requested": args.messages,
        "elapsed_s": round(elapsed, 2), "messages_per_s": round(stats.sent / elapsed, 1) if elapsed else None,
        "crashed": crashed, "exit_code_at_stop": exit_code, "crash": crash or None,
        "hangs": hangs, "server_log_error_lines": len(error_lines), "server_log_error_examples": error_lines[:10],
        "rss_mib": {"start": round(rss[0] / 2**20, 1), "max": round(max(rss) / 2**20, 1),
                    "end": round(rss[-1] / 2**20, 1)},
        "rss_mib_samples": [[n, round(r / 2**20, 1)] for n, r in rss_samples[:: max(1, len(rss_samples) // 100)]],
        **stats.as_dict(),
    }
    failed = crashed or hangs or stats.wrong_success or stats.leaks or stats.undecodable_replies
    if crashed or hangs:
        repro = args.out.with_name(args.out.stem + "_repro.json")
        repro.write_text(json.dumps({"note": "the last batch before the failure; replay with "
                                             "tests.helpers.fuzz_messages.replay(address, messages) against a "
                                             "server whose key is the one below (hex)",
                                     "key_hex": server.key.hex(), "messages": reproducer(recent)}, indent=1))
        print(f"reproducer: {repro}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")

    print(f"\n{stats.sent} messages in {elapsed:.1f} s ({result['messages_per_s']} msg/s), "
          f"{stats.batches} liveness checks")
    print(f"crashes: {int(crashed)}   hangs: {hangs} (ping failures {stats.ping_failures}, "
          f"no reply {stats.no_reply})   late replies: {stats.late}")
    print(f"invalid answered with success: {stats.wrong_success}   leaks: {stats.leaks}   "
          f"undecodable replies: {stats.undecodable_replies}   server log ERROR lines: {len(error_lines)}")
    print(f"RSS MiB start {result['rss_mib']['start']}  max {result['rss_mib']['max']}  end {result['rss_mib']['end']}")
    print("replies:", ", ".join(f"{k} {v}" for k, v in sorted(stats.replies.items())))
    for f in stats.findings[:10]:
        print("finding:", f[:400])
    print(f"wrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
