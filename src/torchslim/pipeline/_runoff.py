"""The runoff: the objective's close contenders timed again, side by side, before the pick.

Candidates are measured one after another, minutes apart, on a machine whose speed drifts
20-40% with what else runs; two artifacts that run the same graph can come out 30% apart
(examples/vit_blocks.py: ONNX fp32 0.106 ms, its int8-weights twin 0.146 ms in one run; 0.111
and 0.114 ms timed together). So before ``best`` is settled, the leader and the candidates
within ``margin`` of it on the objective (at most ``max_candidates``) are loaded with their
tuned settings and timed interleaved in one process (``bench.time_tries``), and the pick is
made on those paired medians, by the objective's own rule. For ``balanced`` the baseline is
timed with them, since its score is a speed-up. Sizes and accuracy are not re-measured: they
do not drift. ``size`` needs no runoff; text models (their latency is a workload of real
sentences) and a custom ``measure_fn`` keep the sequential pick, and the log says why. With
the ray executor the runoff is a task on the target node, alone there like every measurement
(``RayExecutor.runoff``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch

from torchslim.artifacts import load
from torchslim.bench import TimedTry, Timer, time_interleaved, time_tries
from torchslim.pipeline._recipe import RunoffSpec
from torchslim.pipeline._select import (
    TIE_TOLERANCE,
    balanced_score,
    largest_batch,
    primary_batch,
    rank,
)
from torchslim.report import Candidate, Report, Runoff, RunoffEntry


def contenders(report: Report, objective: str, spec: RunoffSpec, constraints) -> list[Candidate]:
    """The leader and those within ``spec.margin`` of it on ``objective``, best first."""
    base = report.baseline.metrics
    ranked = rank(report.candidates, objective, baseline=base, constraints=constraints)
    if objective == "size" or len(ranked) < 2:
        return []
    value = _sequential_value(objective, base)
    lead = value(ranked[0])
    close = [c for c in ranked if value(c) <= lead * (1 + spec.margin)]
    return close[: spec.max_candidates] if len(close) > 1 else []


def why_not(report: Report, measured_elsewhere: str | None) -> str | None:
    """Why no runoff can be run for this report (None: it can)."""
    if report.baseline.metrics is None:
        return "the baseline was not measured"
    if report.baseline.metrics.workload is not None:
        return "a text model's latency is a workload of real sentences, not one batch"
    return measured_elsewhere


def runoff(report: Report, objective: str, spec: RunoffSpec, constraints, *, run_dir: Path,
           make_inputs: Callable[[int], tuple], device: torch.device, timer: Timer = time_interleaved,
           load_fn: Callable[..., Callable] = load, say: Callable[[str], None] = lambda _m: None) -> Runoff | None:
    """Time the contenders together and return the record, whose ``picked`` is the new best;
    None when fewer than two are close (the sequential pick stands, nothing to re-time).
    ``timer`` and ``load_fn`` are seams for tests (``bench.time_interleaved``, ``torchslim.load``)."""
    close = contenders(report, objective, spec, constraints)
    if not close:
        return None
    base = report.baseline
    batch = int(largest_batch(base.metrics) if objective == "throughput" else primary_batch(base.metrics))
    timed = ([base] if objective == "balanced" else []) + close
    inputs = make_inputs(batch)

    def loader(c: Candidate) -> Callable[[], Callable[[], object]]:
        def make() -> Callable[[], object]:
            fn = load_fn(run_dir / c.artifact, device=device)
            return lambda: fn(*inputs)
        return make

    say(f"runoff ({objective}, batch {batch}): timing {', '.join(c.name for c in close)} side by side"
        + (" with the baseline" if objective == "balanced" else ""))
    with torch.no_grad():
        results = time_tries([loader(c) for c in timed], spec.max_seconds, timer)
    paired = {c.name: r for c, r in zip(timed, results, strict=True)}
    picked = _pick(objective, close, paired, base, batch)
    entries = [RunoffEntry(name=c.name, p50_ms=_rounded(paired[c.name]), runs=paired[c.name].runs,
                           measured_ms=_measured(c, batch), error=paired[c.name].error) for c in timed]
    record = Runoff(objective=objective, batch_size=batch, margin=spec.margin, entries=entries,
                    before=close[0].name, picked=picked)
    say(record.line())
    return record


def _pick(objective: str, close: list[Candidate], paired: dict[str, TimedTry], base: Candidate, batch: int) -> str:
    """The objective's rule on the paired medians; a contender that could not be timed is out
    (the sequential leader stands when it is the one, or when too few were timed)."""
    timed = [c for c in close if paired[c.name].p50_ms is not None]
    if close[0] not in timed or len(timed) < 2:
        return close[0].name
    if objective == "balanced":
        base_ms = paired[base.name].p50_ms
        if base_ms is None:
            return close[0].name
        def score(c: Candidate) -> float:
            return math.sqrt(base_ms / paired[c.name].p50_ms * base.metrics.size_bytes / max(c.metrics.size_bytes, 1))
        return max(timed, key=score).name
    # latency and throughput: the fastest class (within TIE_TOLERANCE), then the smallest file
    best = min(paired[c.name].p50_ms for c in timed)
    tied = [c for c in timed if paired[c.name].p50_ms <= best * (1 + TIE_TOLERANCE)]
    return min(tied, key=lambda c: (c.metrics.size_bytes, paired[c.name].p50_ms)).name


def _sequential_value(objective: str, base) -> Callable[[Candidate], float]:
    """Lower is better: the figure the sequential ranking used (balanced: its inverse score)."""
    if objective == "balanced":
        return lambda c: 1.0 / balanced_score(base, c.metrics)
    if objective == "throughput":
        return lambda c: c.metrics.latency_ms[largest_batch(c.metrics)].p50 / int(largest_batch(c.metrics))
    return lambda c: c.metrics.latency_ms[primary_batch(c.metrics)].p50


def _measured(c: Candidate, batch: int) -> float | None:
    stats = c.metrics.latency_ms.get(str(batch)) if c.metrics is not None else None
    return None if stats is None else round(stats.p50, 4)


def _rounded(result: TimedTry) -> float | None:
    return None if result.p50_ms is None else round(result.p50_ms, 4)
