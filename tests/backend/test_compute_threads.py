"""The CPU thread policy: OpenMP defaults and the thread governor, on fake /proc/stat readings."""

from __future__ import annotations

import pytest

from backend.compute_threads import (
    OPENMP_DEFAULTS,
    CpuTimes,
    ThreadGovernor,
    choose_threads,
    configure_process,
    governor_enabled_by_env,
    parse_proc_stat,
)

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
    assert times.busy_s == pytest.approx((4705 + 150 + 1120 + 0 + 37 + 10) / 100)
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


def test_configure_process_sets_passive_defaults_but_keeps_the_users_values():
    env = {"OMP_WAIT_POLICY": "ACTIVE"}
    added = configure_process(env)
    assert env["OMP_WAIT_POLICY"] == "ACTIVE"
    assert "OMP_WAIT_POLICY" not in added
    for name, value in OPENMP_DEFAULTS.items():
        if name != "OMP_WAIT_POLICY":
            assert env[name] == value and added[name] == value
    assert configure_process({})["OMP_WAIT_POLICY"] == "PASSIVE"
