"""Choosing the best candidate (SPEC.md section 5) and the honest notes beside each number.

best = the fastest candidate (batch-1 p50, or the smallest batch measured) whose accuracy
drop is within budget; ties by size on disk. Two p50s closer than ``TIE_TOLERANCE`` are a
tie: timing on a shared CPU varies by a few percent between runs, so preferring a 1% faster
but 3x larger artifact would be picking noise over a real gain.
"""

from __future__ import annotations

from collections.abc import Iterable

from torchslim.bench import Metrics
from torchslim.core.notes import Note
from torchslim.report import Candidate

TIE_TOLERANCE = 0.02  # relative p50 difference below which two candidates are equally fast
NOISE_SPEEDUP = 1.05  # a "speed-up" smaller than this is within timing noise
# A file less than 1% smaller is the same model: two saves of one model differ by a few bytes
# (the archive's internal folder is named after the file).
NOISE_SHRINK = 1.01


def primary_batch(metrics: Metrics) -> str:
    return min(metrics.latency_ms, key=int)


def primary_latency(metrics: Metrics) -> float:
    return metrics.latency_ms[primary_batch(metrics)].p50


def accuracy_drop_points(baseline: Metrics, metrics: Metrics) -> float:
    """Drop in percentage points of the task metric (fidelity x 100 for embeddings)."""
    return (baseline.accuracy - metrics.accuracy) * 100.0


def is_within_budget(baseline: Metrics, metrics: Metrics, max_accuracy_drop: float) -> bool:
    # The epsilon absorbs float noise: a drop of exactly the budget is within it.
    return accuracy_drop_points(baseline, metrics) <= max_accuracy_drop + 1e-9


def eligible(candidates: Iterable[Candidate]) -> list[Candidate]:
    return [c for c in candidates if c.status == "ok" and c.within_budget and c.metrics is not None]


def rank(candidates: Iterable[Candidate]) -> list[Candidate]:
    """Eligible candidates, best first: speed classes (within TIE_TOLERANCE of the fastest
    remaining), inside a class the smallest artifact, then the lower p50."""
    remaining = sorted(eligible(candidates), key=lambda c: primary_latency(c.metrics))
    ranked: list[Candidate] = []
    while remaining:
        fastest = primary_latency(remaining[0].metrics)
        tied = [c for c in remaining if primary_latency(c.metrics) <= fastest * (1 + TIE_TOLERANCE)]
        tied.sort(key=lambda c: (c.metrics.size_bytes, primary_latency(c.metrics)))
        ranked.append(tied[0])
        remaining.remove(tied[0])
    return ranked


def select_best(candidates: Iterable[Candidate]) -> str | None:
    """Name of the best candidate within budget, or None when none is."""
    ranked = rank(candidates)
    return ranked[0].name if ranked else None


def honesty_notes(baseline: Metrics, metrics: Metrics) -> list[Note]:
    """Say plainly where an optimization gave no speed-up or no size gain."""
    notes = []
    for key in sorted(metrics.latency_ms, key=int):
        if key not in baseline.latency_ms or metrics.latency_ms[key].p50 <= 0:
            continue
        speedup = baseline.latency_ms[key].p50 / metrics.latency_ms[key].p50
        if speedup <= 1.0:
            notes.append(Note(kind="no_speedup", text=f"no speed-up at batch {key} over the baseline (x{speedup:.2f})"))
        elif speedup < NOISE_SPEEDUP:
            notes.append(Note(kind="no_speedup", text=f"no clear speed-up at batch {key} over the baseline (x{speedup:.2f}, within timing noise)"))
    if metrics.size_bytes and metrics.size_bytes * NOISE_SHRINK > baseline.size_bytes:
        notes.append(Note(kind="not_smaller", text=f"not smaller on disk than the baseline (x{baseline.size_bytes / metrics.size_bytes:.2f})"))
    return notes
