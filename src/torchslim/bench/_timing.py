"""Latency: warm-up, then repeated timed runs; CUDA is synchronized before each clock read."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LatencyStats:
    p50: float  # milliseconds
    p95: float
    cv: float  # coefficient of variation (stdev / mean) of the timed runs
    runs: int

    def to_dict(self) -> dict:
        return {"p50": self.p50, "p95": self.p95, "cv": self.cv}


def _sync(cuda: bool) -> None:
    if cuda:
        torch.cuda.synchronize()


def time_callable(
    fn: Callable[[], object],
    *,
    cuda: bool = False,
    warmup_s: float = 0.2,
    min_warmup: int = 5,
    target_s: float = 1.0,
    min_runs: int = 20,
    max_runs: int = 300,
    budget_s: float = 30.0,
) -> LatencyStats:
    """Time ``fn()``: warm up for ``warmup_s`` (at least ``min_warmup`` calls), then run until
    ``target_s`` has passed or ``max_runs`` calls are made, never fewer than ``min_runs``.

    Warm-up absorbs lazy initialization, allocator growth and (for compiled runtimes) the
    first-call compile, which would otherwise dominate a p95. A slow call bounds both phases
    by ``budget_s`` each (at least 2 warm-up calls and 3 timed ones): int8 without a fast kernel
    on an AVX2 CPU took 24 s a batch of 32 on MiniLM (p50), and 25 such calls stalled a search for 17 minutes.
    """
    start = time.perf_counter()
    n = 0
    while n < min_warmup or time.perf_counter() - start < warmup_s:
        if n >= 2 and time.perf_counter() - start > budget_s:
            break
        fn()
        n += 1
        if n > 10 * max_runs:
            break
    _sync(cuda)
    samples: list[float] = []
    begin = time.perf_counter()
    while len(samples) < min_runs or (time.perf_counter() - begin < target_s and len(samples) < max_runs):
        if len(samples) >= 3 and time.perf_counter() - begin > budget_s:
            break
        t0 = time.perf_counter()
        fn()
        _sync(cuda)
        samples.append((time.perf_counter() - t0) * 1e3)
    samples.sort()
    mean = statistics.fmean(samples)
    p95_index = min(len(samples) - 1, int(round(0.95 * (len(samples) - 1))))
    return LatencyStats(
        p50=statistics.median(samples),
        p95=samples[p95_index],
        cv=(statistics.pstdev(samples) / mean) if mean > 0 else 0.0,
        runs=len(samples),
    )
