"""How much of the CPU other processes used while we were timing.

A 2-core machine shared with one busy neighbour makes torch's OpenMP threads wait for each
other at every parallel region: measured here, digits-cnn's eager batch-1 p50 went from
0.5 ms to 108 ms while ONNX Runtime (its own thread pool) barely moved, so the speed-up
ratios in such a report are fiction. ``CpuContention`` measures the CPU time spent by
everything except this process (its children, and the memory probes it forks) during a block, from ``/proc/stat``,
so the report can say its latencies were taken on a busy machine instead of presenting them
as facts. Linux only; elsewhere ``foreign_cores`` stays None.
"""

from __future__ import annotations

import os
import time

# Every note this module writes starts so (the report's renderers look for it).
BUSY_NOTE_PREFIX = "measured while other processes used"
# Foreign load (in cores) above which a timing is flagged; a few percent is kernel noise.
BUSY_THRESHOLD_CORES = 0.3


def _system_busy_s() -> float | None:
    """CPU-seconds all CPUs spent busy since boot (user, nice, system, irq, softirq, steal)."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    """CPU-seconds of this process (all threads), of its children that were waited for, and of
    the memory probe's forkserver with the probes it forked (``torchslim.bench._memory``)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system + _forkserver_cpu_s()


def _forkserver_cpu_s() -> float:
    """The forkserver is this process's child but is never waited for, and its children (the
    probes) are its own: read its counters, which include the probes it has reaped."""
    import sys

    forkserver = sys.modules.get("multiprocessing.forkserver")
    pid = getattr(getattr(forkserver, "_forkserver", None), "_forkserver_pid", None)
    if not pid:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    # after the command name: utime, stime, cutime, cstime are fields 14-17 of proc(5)
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


class CpuContention:
    """``with CpuContention() as busy: ...`` then ``busy.foreign_cores`` (None off Linux)."""

    def __init__(self) -> None:
        self.foreign_cores: float | None = None

    def __enter__(self) -> CpuContention:
        self._wall, self._system, self._own = time.perf_counter(), _system_busy_s(), _own_cpu_s()
        return self

    def __exit__(self, *exc) -> None:
        system = _system_busy_s()
        wall = time.perf_counter() - self._wall
        if system is None or self._system is None or wall <= 0:
            return
        foreign = (system - self._system) - (_own_cpu_s() - self._own)
        self.foreign_cores = max(0.0, foreign / wall)

    @property
    def busy(self) -> bool:
        return self.foreign_cores is not None and self.foreign_cores > BUSY_THRESHOLD_CORES

    def note(self) -> str | None:
        """A report note when other processes used a noticeable share of the CPU, else None."""
        if not self.busy:
            return None
        return (f"{BUSY_NOTE_PREFIX} {self.foreign_cores:.1f} of {os.cpu_count()} cores: "
                "its latencies are unreliable (multi-threaded runtimes suffer most); re-run on an idle machine")
