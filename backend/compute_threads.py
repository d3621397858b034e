"""CPU threads of a fit that shares the machine with other work: a thread governor.

Why (``benchmarks/cpu_contention.py`` on the 2-core AMD EPYC VM: D-NeRF jumpingjacks at
128 px, 4,000 Gaussians, 4 frames a step; median steps/s, ratios to the same settings
alone; tables in ``benchmarks/results/cpu_contention*.md``):

- One OpenMP runtime does all the parallel work: torch's bundled ``torch/lib/libgomp.so.1``.
  Numba's OpenMP layer (``numba/np/ufunc/omppool*.so``) also maps the system's
  ``libgomp.so.1.0.0``, but its ``GOMP_parallel`` and ``omp_set_num_threads`` bind to
  torch's copy, loaded first (``LD_DEBUG=bindings``), so torch and Numba share one pool.
- With ``OMP_WAIT_POLICY`` unset libgomp's idle workers spin 300,000 rounds (about 3 ms)
  before they sleep. A step runs hundreds of small torch parallel regions closer together
  than that, so a 2-thread fit keeps both cores busy (22-27 steps/s alone against 15-16
  with one thread). Beside other work the spinning worker holds a core the descheduled
  thread needs and every barrier waits for it: 0.44× (0.34× by mean rate) beside a second
  such fit, 0.25× beside a Cycles render, 1.5-3× the CPU time per step.
  ``OMP_WAIT_POLICY=ACTIVE`` is as bad (0.21× / 0.22×), ``GOMP_SPINCOUNT=1000`` halfway
  (0.54× / 0.53×), Numba's ``workqueue`` layer far worse (0.05× / 0.11×).
- ``OMP_WAIT_POLICY=PASSIVE`` cures most of it (0.83× beside a fit, 0.44-0.76× beside
  Cycles in three runs) but a fit alone is 10-25 % slower (17-21 against 22-27 steps/s),
  so the backend does not set it.
- One thread runs no parallel region, so nothing spins: 0.97× of its alone speed beside a
  second fit, 0.75× beside Cycles (its per-thread share of the cores).

Hence :class:`ThreadGovernor`: all the cores while the machine is otherwise idle, one core
less for every core other processes keep busy, re-checked every second between steps.
Measured (``cpu_contention.md``): alone 25.4 steps/s (22.3 without it: not slower), beside
a second fit 0.66×, beside Cycles 0.49× (and Cycles renders 0.85 instead of 0.66 frames/s);
with Numba's workqueue layer 0.94× / 0.52×. It sets torch's thread count; the Numba
rasterizer launches with ``min(torch.get_num_threads(), NUMBA_NUM_THREADS)`` threads, so it
follows. ``GEN4D_THREAD_GOVERNOR=0`` turns it off. It reads the whole machine's
``/proc/stat``: pinned to a subset of the CPUs, or in a container with a CPU quota, it sees
load it does not compete with and may give up cores it could have used.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass
from typing import Callable, MutableMapping, Optional

#: environment variable that turns the governor off when set to 0, false, no or off.
GOVERNOR_ENV = "GEN4D_THREAD_GOVERNOR"


@dataclass(frozen=True)
class CpuTimes:
    """One reading of the machine's CPU time (the aggregate ``cpu`` line of ``/proc/stat``).

    Attributes:
        busy_s: CPU seconds spent busy since boot, summed over all CPUs (user, nice,
            system, irq, softirq; ``guest`` is already inside user; ``steal``, time the
            hypervisor gave to other machines, is not work of this machine's processes).
        idle_s: CPU seconds idle or waiting for I/O since boot, summed over all CPUs.
    """

    busy_s: float
    idle_s: float


def parse_proc_stat(text: str, ticks_per_s: float) -> CpuTimes:
    """Parse the aggregate ``cpu`` line of ``/proc/stat`` text.

    Args:
        text: the file's text (only the line starting with ``"cpu "`` is read).
        ticks_per_s: clock ticks per second (``os.sysconf("SC_CLK_TCK")``, 100 on Linux).

    Returns:
        :class:`CpuTimes` in seconds.

    Raises:
        ValueError: no ``cpu`` line, or fewer than 4 numeric fields on it.
    """
    for line in text.splitlines():
        if line.startswith("cpu "):
            try:
                ticks = [int(x) for x in line.split()[1:]]
            except ValueError:
                raise ValueError(f"/proc/stat: non-numeric cpu line {line!r}") from None
            if len(ticks) < 4:
                raise ValueError(f"/proc/stat: cpu line has {len(ticks)} fields, expected at least 4")
            ticks += [0] * (8 - len(ticks))
            user, nice, system, idle, iowait, irq, softirq, _steal = ticks[:8]
            return CpuTimes(busy_s=(user + nice + system + irq + softirq) / ticks_per_s,
                            idle_s=(idle + iowait) / ticks_per_s)
    raise ValueError("/proc/stat: no aggregate 'cpu' line")


def read_proc_stat(path: str = "/proc/stat") -> CpuTimes:
    """The machine's CPU time now, from ``/proc/stat``.

    Raises:
        OSError: the file cannot be read (not Linux).
        ValueError: its format is not understood.
    """
    with open(path, encoding="ascii") as f:
        return parse_proc_stat(f.read(), float(os.sysconf("SC_CLK_TCK")))


def process_cpu_seconds() -> float:
    """CPU seconds (user + system) this process has used so far, all of its threads."""
    t = os.times()
    return t.user + t.system


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask; ``os.cpu_count()`` where there is none)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def choose_threads(other_busy_cores: float, n_cpus: int, max_threads: int, idle_tolerance: float = 0.25) -> int:
    """Threads to use when other processes keep ``other_busy_cores`` cores busy.

    ``n_cpus − ceil(other_busy_cores − idle_tolerance)``, clamped to ``[1, max_threads]``:
    every core another process keeps busy more than ``idle_tolerance`` of the time is left
    to it (background noise below the tolerance is ignored).

    Args:
        other_busy_cores: CPU time of the other processes per wall second (cores, ≥ 0).
        n_cpus: CPUs this process may use.
        max_threads: the most threads to return (what the process was started with).
        idle_tolerance: cores of other load that still count as idle.

    Returns:
        A thread count in ``[1, max(1, max_threads)]``.

    Raises:
        ValueError: ``n_cpus < 1`` or a negative ``idle_tolerance``.
    """
    if n_cpus < 1:
        raise ValueError(f"n_cpus must be >= 1, got {n_cpus}")
    if idle_tolerance < 0:
        raise ValueError(f"idle_tolerance must be >= 0, got {idle_tolerance}")
    taken = max(0, math.ceil(max(0.0, other_busy_cores) - idle_tolerance))
    return max(1, min(max(1, max_threads), n_cpus - taken))


def governor_enabled_by_env(environ: Optional[MutableMapping[str, str]] = None) -> bool:
    """False when ``GEN4D_THREAD_GOVERNOR`` is ``0``, ``false``, ``no`` or ``off``; True otherwise."""
    env = os.environ if environ is None else environ
    return env.get(GOVERNOR_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


class ThreadGovernor:
    """Gives a CPU fit only the cores other processes leave free, re-checked between steps.

    Usage, in the thread that runs the fit (torch's thread count is per thread)::

        governor = ThreadGovernor()
        for step in range(iterations):
            governor.maybe_adjust(step)
            trainer.step(step)
        governor.restore()

    (or the one line :func:`govern_threads` in the loop). Every ``interval_s`` (wall clock)
    :meth:`maybe_adjust` measures the other processes' CPU use over the interval,
    ``(Δ busy of the machine − Δ CPU of this process) / Δ wall`` in cores, and sets
    ``torch.set_num_threads(choose_threads(...))``. It lowers the count at once and raises
    it only after ``raise_after`` readings in a row agree, so a short lull beside a render
    does not bring back the slow oversubscribed state. Cheap: one ``time.monotonic()`` a
    step, one read of ``/proc/stat`` a second.

    Args:
        max_threads: the most threads to use; torch's current count when None.
        interval_s: seconds between readings.
        idle_tolerance: see :func:`choose_threads`.
        raise_after: readings in a row that must ask for more threads before it raises.
        n_cpus: CPUs to share; :func:`available_cpus` when None.
        enabled: False makes :meth:`maybe_adjust` do nothing; None reads
            ``GEN4D_THREAD_GOVERNOR`` (:func:`governor_enabled_by_env`).
        read_cpu, own_cpu, clock, set_threads, get_threads: the machine's CPU time
            (:class:`CpuTimes`), this process's CPU seconds, a monotonic clock in seconds,
            and the thread setter/getter (torch's when None); injectable for tests.

    Attributes:
        threads: the thread count the governor last set (``max_threads`` at first).
        history: ``(step, other_busy_cores, threads)`` for every reading.

    Raises:
        ValueError: ``interval_s <= 0`` or ``raise_after < 1``.
    """

    def __init__(self, max_threads: Optional[int] = None, interval_s: float = 1.0, idle_tolerance: float = 0.25,
                 raise_after: int = 2, n_cpus: Optional[int] = None, enabled: Optional[bool] = None, *,
                 read_cpu: Callable[[], CpuTimes] = read_proc_stat,
                 own_cpu: Callable[[], float] = process_cpu_seconds,
                 clock: Callable[[], float] = time.monotonic,
                 set_threads: Optional[Callable[[int], None]] = None,
                 get_threads: Optional[Callable[[], int]] = None):
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        if raise_after < 1:
            raise ValueError(f"raise_after must be >= 1, got {raise_after}")
        if set_threads is None or get_threads is None:
            import torch

            set_threads = set_threads or torch.set_num_threads
            get_threads = get_threads or torch.get_num_threads
        self._set, self._get = set_threads, get_threads
        self._read_cpu, self._own_cpu, self._clock = read_cpu, own_cpu, clock
        self.enabled = governor_enabled_by_env() if enabled is None else bool(enabled)
        self.max_threads = max(1, int(max_threads if max_threads is not None else get_threads()))
        self.threads = self.max_threads
        self.n_cpus = n_cpus if n_cpus is not None else available_cpus()
        self.interval_s, self.idle_tolerance, self.raise_after = interval_s, idle_tolerance, raise_after
        self.history: list[tuple[int, float, int]] = []
        self._last: Optional[tuple[float, CpuTimes, float]] = None
        self._want_more = 0

    def _sample(self) -> Optional[tuple[float, CpuTimes, float]]:
        try:
            return self._clock(), self._read_cpu(), self._own_cpu()
        except (OSError, ValueError):
            self.enabled = False  # no /proc/stat here: leave the threads as they are
            return None

    def maybe_adjust(self, step: int) -> int:
        """Re-read the machine's load if ``interval_s`` has passed, and set the thread count.

        The first call only takes the first reading. Each reading also re-applies the
        governor's count if something else changed torch's (Numba's first parallel launch
        calls ``omp_set_num_threads(NUMBA_NUM_THREADS)`` on torch's libgomp).

        Args:
            step: the training step about to run (recorded in :attr:`history`).

        Returns:
            The thread count in effect for the next step. Never raises: where the machine's
            load cannot be read the governor turns itself off and leaves the count alone.
        """
        if not self.enabled:
            return self.threads
        if self._last is None:
            self._last = self._sample()
            return self.threads
        if self._clock() - self._last[0] < self.interval_s:
            return self.threads
        now = self._sample()
        if now is None:
            return self.threads
        (t0, cpu0, own0), (t1, cpu1, own1) = self._last, now
        self._last = now
        wall = max(t1 - t0, 1e-6)
        others = max(0.0, ((cpu1.busy_s - cpu0.busy_s) - (own1 - own0)) / wall)
        want = choose_threads(others, self.n_cpus, self.max_threads, self.idle_tolerance)
        if want < self.threads:
            self._apply(want)
        elif want > self.threads:
            self._want_more += 1
            if self._want_more >= self.raise_after:
                self._apply(want)
        else:
            self._want_more = 0
        if self._get() != self.threads:
            self._set(self.threads)
        self.history.append((step, others, self.threads))
        return self.threads

    def overridden(self) -> bool:
        """True when torch's thread count is no longer the one this governor last set
        (someone else called ``torch.set_num_threads``)."""
        return self._get() != self.threads

    def restore(self) -> None:
        """Set torch's thread count back to ``max_threads`` and forget the last reading
        (call it when the fit ends, so the work after it gets every core back)."""
        self._last, self._want_more = None, 0
        if self.threads != self.max_threads or self._get() != self.max_threads:
            self._apply(self.max_threads)

    def _apply(self, threads: int) -> None:
        self._set(threads)
        self.threads = threads
        self._want_more = 0


_PER_THREAD = threading.local()


def govern_threads(step: int, device: str = "cpu") -> int:
    """The one-line hook for a training loop: ``govern_threads(step, device)`` before each step.

    Keeps one :class:`ThreadGovernor` per calling thread (the server runs jobs one after
    another in its worker thread). Step 0 starts a new fit: the governor first gives back
    every core (:meth:`ThreadGovernor.restore`), so a fit never inherits the count the
    previous one ended with; if the caller changed torch's thread count since the last
    fit, that count becomes the new ceiling.

    Args:
        step: the step about to run (0 for a fit's first).
        device: the fit's device; anything but ``"cpu"`` is left alone (returns 0).

    Returns:
        The CPU thread count in effect for the step, or 0 for a non-CPU device.
    """
    if not str(device).startswith("cpu"):
        return 0
    governor = getattr(_PER_THREAD, "governor", None)
    if governor is None or (step == 0 and governor.overridden()):
        # first fit of this thread, or the caller set its own thread count since the last
        # fit (a test or a benchmark worker): that count is the new ceiling
        governor = _PER_THREAD.governor = ThreadGovernor()
    elif step == 0:
        governor.restore()
    return governor.maybe_adjust(step)
