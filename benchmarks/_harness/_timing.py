"""Interleaved timing for benchmarks that compare variants call by call (MiniLM's runtimes).

Every round runs every variant on every workload once, each timed call after a short pause so
no variant pays for another's still-spinning worker threads (ORT and OpenVINO spin a few ms
after a call); the median over rounds is reported, so load from other processes hits every
variant alike instead of whichever ran during a spike. One call per sample: at 5-100 ms a call,
the clock's resolution is not the limit, the machine's noise is.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

PAUSE_S = 0.05


def interleaved_ms(variants: dict[str, Callable], workloads: dict[str, tuple], rounds: int, *,
                   pause_s: float = PAUSE_S, workload_major: bool = False,
                   extra: Callable[[Callable], dict[str, float]] | None = None,
                   on_round: Callable[[dict, int], None] | None = None) -> dict[str, dict[str, float]]:
    """{variant: {workload: median}} in ms (``extra``'s workloads in its own unit).

    Each round walks variants, then workloads; ``workload_major``: workloads, then variants.
    ``extra(fn)`` adds workloads timed its own way, once per variant per round, after the
    variant's fixed workloads (variant-major only); ``on_round(medians so far, rounds done)``
    runs after every round, e.g. to save partial results.
    """
    if extra is not None and workload_major:
        raise ValueError("extra workloads are timed per variant: use the variant-major order")
    times: dict[str, dict[str, list[float]]] = {name: {} for name in variants}

    def timed(name: str, workload: str) -> None:
        time.sleep(pause_s)
        t0 = time.perf_counter()
        variants[name](*workloads[workload])
        times[name].setdefault(workload, []).append((time.perf_counter() - t0) * 1e3)

    for fn in variants.values():  # warm-up: first calls allocate and compile kernels per shape
        for inputs in workloads.values():
            fn(*inputs)
    median: dict[str, dict[str, float]] = {}
    for r in range(rounds):
        started = time.perf_counter()
        if workload_major:
            for workload in workloads:
                for name in variants:
                    timed(name, workload)
        else:
            for name, fn in variants.items():
                for workload in workloads:
                    timed(name, workload)
                for workload, value in (extra(fn) if extra is not None else {}).items():
                    times[name].setdefault(workload, []).append(value)
        print(f"round {r + 1}/{rounds} in {time.perf_counter() - started:.0f}s, load {os.getloadavg()[0]:.1f}",
              flush=True)
        median = {name: {w: statistics.median(v) for w, v in per.items()} for name, per in times.items()}
        if on_round is not None:
            on_round(median, r + 1)
    return median
