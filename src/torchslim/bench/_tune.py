"""Timing the tries of a runtime-settings search: every variant loaded, then timed interleaved.

A shared machine drifts (other processes come and go), so variants timed one after another
would be ranked by the drift as much as by their settings. Each round times every variant
for a slice of the target time (~0.5 s per variant in all, at least one call each); a
variant's figure is the median of all its calls. Loading stops once a third of the budget is
spent (the first variant, the default, is always loaded); timing stops after three rounds and
the target, or when the budget is spent (after at least one round), whichever comes first.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass
class TimedTry:
    p50_ms: float | None = None  # None: not measured (see error)
    runs: int = 0
    error: str | None = None  # why it could not be loaded or run; "not tried: ..." when out of time


Timer = Callable[..., list[list[float]]]  # (calls, budget_s, target_s) -> ms of each call of each variant
TARGET_PER_TRY_S = 0.5  # enough calls for a stable median of a fast model; slow ones get >= 3 rounds


def time_interleaved(calls: Sequence[Callable[[], object]], budget_s: float, target_s: float | None = None,
                     min_rounds: int = 3) -> list[list[float]]:
    """Milliseconds of each call of each variant, interleaved in rounds (at least one timed call
    per variant per round; the calls are warm: ``time_tries`` ran each once when loading it).
    Rounds go on until ``min_rounds`` are done and ``target_s`` has passed; none starts when it
    would likely end past ``budget_s`` (the first always runs)."""
    target = min(budget_s, target_s if target_s is not None else budget_s)
    slice_s = target / max(1, min_rounds * len(calls))
    samples: list[list[float]] = [[] for _ in calls]
    begin = time.perf_counter()
    rounds = 0
    while True:
        elapsed = time.perf_counter() - begin
        if rounds and (elapsed + elapsed / rounds > budget_s or (rounds >= min_rounds and elapsed >= target)):
            break
        for i, call in enumerate(calls):
            start = time.perf_counter()
            while True:
                t0 = time.perf_counter()
                call()
                now = time.perf_counter()
                samples[i].append((now - t0) * 1e3)
                if now - start >= slice_s:
                    break
        rounds += 1
    return samples


def time_tries(loaders: Sequence[Callable[[], Callable[[], object]]], max_seconds: float,
               timer: Timer = time_interleaved) -> list[TimedTry]:
    """Load each variant (``loaders[i]()`` returns a zero-argument call that runs it once) and
    time them together with ``timer`` (tests pass fake timings); one ``TimedTry`` per loader."""
    results = [TimedTry() for _ in loaders]
    loaded: list[tuple[int, Callable[[], object]]] = []
    begin = time.perf_counter()
    for i, loader in enumerate(loaders):
        if i and time.perf_counter() - begin > max_seconds / 3:
            results[i].error = f"not tried: loading the tries took over a third of the {max_seconds:g} s budget"
            continue
        try:
            call = loader()
            call()  # the warm-up; a variant that cannot run is found here, not in the middle of the timing
            loaded.append((i, call))
        except Exception as e:  # noqa: BLE001  (recorded in the try; the default still stands)
            text = str(e).strip().splitlines()[0] if str(e).strip() else ""
            results[i].error = f"{type(e).__name__}: {text}"[:300]
    left = max(0.5, max_seconds - (time.perf_counter() - begin))
    if loaded:
        samples = timer([call for _, call in loaded], left, min(left, TARGET_PER_TRY_S * len(loaded)))
        for (i, _), times in zip(loaded, samples, strict=True):
            results[i].p50_ms, results[i].runs = (statistics.median(times), len(times)) if times else (None, 0)
    loaded.clear()
    gc.collect()  # sessions and compiled models of the tries go now, not during the next measurement
    return results
