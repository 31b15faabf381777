"""Choosing the best candidate (SPEC.md section 5) and the honest notes beside each number.

best = the winner of the chosen objective (``rank``) among the candidates whose accuracy drop
is within budget and that break no hard constraint. For latency: the fastest at batch 1 (or
the smallest batch measured); ties by size on disk. Two p50s closer than ``TIE_TOLERANCE`` are a
tie: timing on a shared CPU varies by a few percent between runs, so preferring a 1% faster
but 3x larger artifact would be picking noise over a real gain.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from torchslim.bench import Metrics
from torchslim.core.notes import Note
from torchslim.errors import ConfigError
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


OBJECTIVES = ("latency", "throughput", "size", "balanced")


@dataclass(frozen=True)
class Constraints:
    """Hard limits: a candidate that breaks one is not eligible, whatever the objective.
    (The user sets and ``optimize`` validates them as fields of ``Goal``.)"""

    max_latency_ms: float | None = None  # batch-1 (smallest batch measured) p50
    max_size_mb: float | None = None  # bytes on disk / 1e6

    def as_dict(self) -> dict[str, float]:
        return {k: v for k, v in (("max_latency_ms", self.max_latency_ms), ("max_size_mb", self.max_size_mb))
                if v is not None}

    def violations(self, metrics: Metrics) -> list[str]:
        out = []
        if self.max_latency_ms is not None and primary_latency(metrics) > self.max_latency_ms:
            out.append(f"p50 at batch {primary_batch(metrics)} is {primary_latency(metrics):.3f} ms, over "
                       f"--max-latency-ms {self.max_latency_ms:g}")
        if self.max_size_mb is not None and metrics.size_bytes / 1e6 > self.max_size_mb:
            out.append(f"{metrics.size_bytes / 1e6:.3f} MB on disk, over --max-size-mb {self.max_size_mb:g}")
        return out


def eligible(candidates: Iterable[Candidate], constraints: Constraints | None = None) -> list[Candidate]:
    constraints = constraints or Constraints()
    return [c for c in candidates if c.status == "ok" and c.within_budget and c.metrics is not None
            and not constraints.violations(c.metrics)]


def largest_batch(metrics: Metrics) -> str:
    return max(metrics.latency_ms, key=int)


def _per_sample_ms(metrics: Metrics) -> float:
    """Throughput's key: for text, the held-out sentences in batches, per sentence (what a
    batching service sees); otherwise the per-sample time at the largest batch measured."""
    if metrics.workload is not None:
        return metrics.workload.batched_s * 1e3 / metrics.workload.sentences
    key = largest_batch(metrics)
    return metrics.latency_ms[key].p50 / int(key)


def request_latency(metrics: Metrics) -> float:
    """Latency's key: for text, the mean time of one real sentence sent alone (cut to its own
    length, not padded to the maximum); otherwise the batch-1 (smallest batch) p50."""
    if metrics.workload is not None:
        return metrics.workload.one_by_one_s * 1e3 / metrics.workload.sentences
    return primary_latency(metrics)


def _tie_ranked(candidates: list[Candidate], speed, tiebreak) -> list[Candidate]:
    """Best first by ``speed`` (lower is better) in classes within TIE_TOLERANCE of the best
    remaining; inside a class by ``tiebreak`` (lower is better)."""
    remaining = sorted(candidates, key=speed)
    ranked: list[Candidate] = []
    while remaining:
        best = speed(remaining[0])
        tied = [c for c in remaining if speed(c) <= best * (1 + TIE_TOLERANCE)]
        tied.sort(key=lambda c: (tiebreak(c), speed(c)))
        ranked.append(tied[0])
        remaining.remove(tied[0])
    return ranked


def balanced_score(baseline: Metrics, metrics: Metrics) -> float:
    """The geometric mean of the batch-1 speed-up and the size ratio against the baseline:
    scale-free (2x faster and 2x smaller scores 2.0, like 4x faster at the same size)."""
    speedup = request_latency(baseline) / request_latency(metrics)
    shrink = baseline.size_bytes / max(metrics.size_bytes, 1)
    return math.sqrt(speedup * shrink)


def rank(candidates: Iterable[Candidate], objective: str = "latency", *, baseline: Metrics | None = None,
         constraints: Constraints | None = None) -> list[Candidate]:
    """Eligible candidates, best first for ``objective``:

    latency     batch-1 p50, or for text one real sentence at a time (speed classes within
                TIE_TOLERANCE, then the smallest file)
    throughput  per-sample time at the largest batch measured, or for text the sentences in
                batches (then the smallest file)
    size        bytes on disk (then the lower batch-1 p50)
    balanced    ``balanced_score`` against the baseline, highest first
    """
    pool = eligible(candidates, constraints)
    if objective == "latency":
        return _tie_ranked(pool, lambda c: request_latency(c.metrics), lambda c: c.metrics.size_bytes)
    if objective == "throughput":
        return _tie_ranked(pool, lambda c: _per_sample_ms(c.metrics), lambda c: c.metrics.size_bytes)
    if objective == "size":
        return sorted(pool, key=lambda c: (c.metrics.size_bytes, request_latency(c.metrics)))
    if objective == "balanced":
        if baseline is None:
            raise ValueError("the balanced objective scores candidates against the baseline's metrics")
        return sorted(pool, key=lambda c: -balanced_score(baseline, c.metrics))
    raise ConfigError(f"Unknown objective {objective!r}: use one of {', '.join(OBJECTIVES)}.")


def select_best(candidates: Iterable[Candidate], objective: str = "latency", *, baseline: Metrics | None = None,
                constraints: Constraints | None = None) -> str | None:
    """Name of the best candidate within budget (and constraints) for ``objective``, or None."""
    ranked = rank(candidates, objective, baseline=baseline, constraints=constraints)
    return ranked[0].name if ranked else None


def winners(candidates: list[Candidate], baseline: Metrics, constraints: Constraints | None = None) -> dict[str, str | None]:
    """The best within budget for every objective, whichever was chosen."""
    return {o: select_best(candidates, o, baseline=baseline, constraints=constraints) for o in OBJECTIVES}


def pareto_front(candidates: Iterable[Candidate]) -> list[str]:
    """Measured candidates no other beats on accuracy, batch-1 latency and size all at once."""
    measured = [c for c in candidates if c.status == "ok" and c.metrics is not None]

    def point(c: Candidate) -> tuple[float, float, float]:
        return (-c.metrics.accuracy, request_latency(c.metrics), float(c.metrics.size_bytes))

    def dominates(a, b) -> bool:
        return all(x <= y for x, y in zip(a, b, strict=True)) and a != b

    return [c.name for c in measured if not any(dominates(point(o), point(c)) for o in measured if o is not c)]


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
