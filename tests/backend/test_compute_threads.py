"""The CPU thread policy: OpenMP defaults and the thread governor, on fake /proc/stat readings."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from backend import compute_threads
from backend.compute_threads import (
    CpuTimes,
    ThreadGovernor,
    choose_threads,
    govern_threads,
    governor_enabled_by_env,
    parse_proc_stat,
)

ROOT = Path(__file__).resolve().parents[2]

PROC_STAT = """cpu  4705 150 1120 16250 520 0 37 10 0 0
cpu0 2350 75 560 8125 260 0 20 5 0 0
cpu1 2355 75 560 8125 260 0 17 5 0 0
intr 1234
"""


class FakeMachine:
    """A 2-CPU machine whose other processes keep ``others`` cores busy; the fit keeps ``own``."""

    def __init__(self, others: float, own: float = 1.0):
        self.t, self.busy, self.own_s = 0.0, 0.0, 0.0
        self.others, self.own = others, own
        self.set_calls: list[int] = []
        self.threads = 2

    def advance(self, seconds: float) -> None:
        self.t += seconds
        self.busy += (self.others + self.own) * seconds
        self.own_s += self.own * seconds

    def governor(self, **kw) -> ThreadGovernor:
        def set_threads(n: int) -> None:
            self.set_calls.append(n)
            self.threads = n

        return ThreadGovernor(n_cpus=2, enabled=True, read_cpu=lambda: CpuTimes(self.busy, 0.0),
                              own_cpu=lambda: self.own_s, clock=lambda: self.t, set_threads=set_threads,
                              get_threads=lambda: self.threads, **kw)


def run_steps(machine: FakeMachine, governor: ThreadGovernor, steps: int, step_s: float = 0.25) -> None:
    for step in range(steps):
        governor.maybe_adjust(step)
        machine.advance(step_s)


def test_parse_proc_stat_reads_the_aggregate_line_in_seconds():
    times = parse_proc_stat(PROC_STAT, 100.0)
    assert times.busy_s == pytest.approx((4705 + 150 + 1120 + 0 + 37) / 100)  # steal (10) is not ours
    assert times.idle_s == pytest.approx((16250 + 520) / 100)


def test_parse_proc_stat_refuses_text_without_a_cpu_line():
    with pytest.raises(ValueError, match="no aggregate"):
        parse_proc_stat("cpu0 1 2 3 4\n", 100.0)
    with pytest.raises(ValueError, match="fields"):
        parse_proc_stat("cpu  1 2\n", 100.0)


@pytest.mark.parametrize("others, expected", [(0.0, 2), (0.2, 2), (0.4, 1), (1.0, 1), (1.3, 1), (2.0, 1)])
def test_choose_threads_leaves_busy_cores_to_the_others(others, expected):
    assert choose_threads(others, n_cpus=2, max_threads=2) == expected


def test_choose_threads_never_exceeds_max_threads_nor_goes_below_one():
    assert choose_threads(0.0, n_cpus=8, max_threads=3) == 3
    assert choose_threads(7.9, n_cpus=8, max_threads=8) == 1
    assert choose_threads(2.0, n_cpus=8, max_threads=8) == 6
    with pytest.raises(ValueError):
        choose_threads(0.0, n_cpus=0, max_threads=1)


def test_governor_drops_to_one_thread_beside_a_busy_process():
    machine = FakeMachine(others=1.8)
    governor = machine.governor()
    run_steps(machine, governor, 8)
    assert machine.set_calls == [1]
    assert governor.threads == 1
    step, others, threads = governor.history[0]
    assert others == pytest.approx(1.8)
    assert threads == 1


def test_governor_keeps_every_core_on_an_idle_machine():
    machine = FakeMachine(others=0.05, own=2.0)
    governor = machine.governor()
    run_steps(machine, governor, 20)
    assert machine.set_calls == []
    assert governor.threads == 2
    assert len(governor.history) >= 4


def test_governor_raises_threads_again_only_after_consecutive_idle_readings():
    machine = FakeMachine(others=1.0)
    governor = machine.governor(interval_s=1.0, raise_after=2)
    run_steps(machine, governor, 8)  # 2 s busy
    assert governor.threads == 1
    machine.others = 0.0
    for step in range(8, 13):  # 1.25 s idle: one reading asks for more, not enough yet
        governor.maybe_adjust(step)
        machine.advance(0.25)
    assert governor.threads == 1
    run_steps(machine, governor, 8)
    assert governor.threads == 2
    assert machine.set_calls == [1, 2]


def test_governor_readings_wait_for_the_interval():
    machine = FakeMachine(others=2.0)
    governor = machine.governor(interval_s=5.0)
    run_steps(machine, governor, 10)  # 2.5 s: no full interval yet
    assert governor.history == [] and machine.set_calls == []


def test_governor_turns_itself_off_where_the_load_cannot_be_read():
    def unreadable():
        raise OSError("no /proc/stat")

    calls = []
    governor = ThreadGovernor(n_cpus=2, enabled=True, read_cpu=unreadable, own_cpu=lambda: 0.0,
                              set_threads=calls.append, get_threads=lambda: 2)
    assert governor.maybe_adjust(0) == 2
    assert governor.enabled is False and calls == []


def test_governor_disabled_by_environment(monkeypatch):
    assert governor_enabled_by_env({"GEN4D_THREAD_GOVERNOR": "0"}) is False
    assert governor_enabled_by_env({"GEN4D_THREAD_GOVERNOR": "off"}) is False
    assert governor_enabled_by_env({}) is True
    monkeypatch.setenv("GEN4D_THREAD_GOVERNOR", "0")
    machine = FakeMachine(others=2.0)
    governor = ThreadGovernor(n_cpus=2, read_cpu=lambda: CpuTimes(machine.busy, 0.0), own_cpu=lambda: 0.0,
                              clock=lambda: machine.t, set_threads=machine.set_calls.append, get_threads=lambda: 2)
    run_steps(machine, governor, 10)
    assert machine.set_calls == []


def test_governor_puts_back_a_count_someone_else_changed():
    machine = FakeMachine(others=0.0, own=2.0)
    governor = machine.governor()
    run_steps(machine, governor, 2)
    machine.threads = 1  # e.g. Numba's first launch calling omp_set_num_threads
    run_steps(machine, governor, 6)
    assert machine.threads == 2 and governor.threads == 2


def test_restore_gives_every_core_back():
    machine = FakeMachine(others=2.0)
    governor = machine.governor()
    run_steps(machine, governor, 8)
    assert machine.threads == 1
    governor.restore()
    assert machine.threads == 2 and governor.threads == 2


def test_govern_threads_keeps_one_governor_per_thread_and_restarts_at_step_zero(monkeypatch):
    made = []

    class Recorder:
        def __init__(self):
            self.calls, self.restored = [], 0
            made.append(self)

        def maybe_adjust(self, step):
            self.calls.append(step)
            return 1

        def restore(self):
            self.restored += 1

        def overridden(self):
            return overridden

    overridden = False

    monkeypatch.setattr(compute_threads, "ThreadGovernor", Recorder)
    monkeypatch.setattr(compute_threads, "_PER_THREAD", threading.local())
    assert govern_threads(0, "cuda") == 0 and made == []
    for step in range(3):
        assert govern_threads(step, "cpu") == 1
    govern_threads(0, "cpu")
    assert len(made) == 1 and made[0].calls == [0, 1, 2, 0] and made[0].restored == 1
    other = threading.Thread(target=govern_threads, args=(5, "cpu"))
    other.start()
    other.join()
    assert len(made) == 2 and made[1].calls == [5]
    # the caller set its own thread count since the last fit: a new governor, with that ceiling
    overridden = True
    govern_threads(0, "cpu")
    assert len(made) == 3 and made[2].calls == [0] and made[0].restored == 1


def test_first_numba_launch_keeps_torchs_thread_count():
    """Numba's first launch calls omp_set_num_threads(NUMBA_NUM_THREADS) on torch's libgomp;
    the rasterizer puts torch's count back (fresh process: the first launch happens once)."""
    code = """
import torch
torch.set_num_threads(1)
from backend.render.numba_rasterizer import rasterize_numba
n = 3
eye = torch.eye(4)[None]
eye[0, 2, 3] = 3.0
K = torch.tensor([[[8.0, 0, 4], [0, 8.0, 4], [0, 0, 1]]])
rasterize_numba(torch.zeros(1, n, 3), torch.tensor([[[1.0, 0, 0, 0]] * n]), torch.full((1, n, 3), 0.2),
                torch.full((1, n), 0.5), torch.rand(1, n, 3), eye, K, 8, 8)
print(torch.get_num_threads())
"""
    env = {**os.environ, "NUMBA_NUM_THREADS": "2", "PYTHONPATH": str(ROOT)}
    env.pop("OMP_NUM_THREADS", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-1] == "1"
