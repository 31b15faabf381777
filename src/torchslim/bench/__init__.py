"""The measurement harness: the only place in torchslim that reads a clock.

``measure(...)`` returns ``Metrics`` (SPEC.md section 5 ``metrics``) for a callable model
and the artifact it was loaded from: accuracy (or fidelity) on the held-out split, real
bytes on disk, parameters, MACs, latency per batch size, throughput, peak memory.
"""

from __future__ import annotations

from torchslim.bench._contention import CpuContention
from torchslim.bench._counting import count_macs, count_params
from torchslim.bench._measure import Metrics, measure, set_threads
from torchslim.bench._memory import peak_memory
from torchslim.bench._timing import LatencyStats, time_callable
from torchslim.data import accuracy, fidelity, predict

__all__ = [
    "CpuContention",
    "LatencyStats",
    "Metrics",
    "accuracy",
    "count_macs",
    "count_params",
    "fidelity",
    "measure",
    "peak_memory",
    "predict",
    "set_threads",
    "time_callable",
    "TimedTry",
    "Timer",
    "time_interleaved",
    "time_tries",
]

from torchslim.bench._api import benchmark  # noqa: E402  (imports the modules above)
from torchslim.bench._tune import TimedTry, Timer, time_interleaved, time_tries

__all__ += ["benchmark"]
