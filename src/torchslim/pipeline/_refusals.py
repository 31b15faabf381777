"""Up-front refusals (``errors.RefusedError``): said once, never met twice.

A technique refuses a block of the model whatever strength it is asked for, so every other
candidate and search try that reaches the same steps with other strengths (``ratio``,
``rank_ratio``, ``bits``) would meet the same refusal: they are skipped without running, with a
short pointer to the one ``Report.refusals`` entry that says why. The earlier steps count
(options other than strength included): a refusal after ``factorize`` says nothing about the
same prune step on the unfactorized model, and ``prune.ignore`` listing the block is the way
out, so a candidate with other options is tried.
"""

from __future__ import annotations

from collections.abc import Mapping

from torchslim.errors import RefusedError
from torchslim.pipeline._recipe import PlannedCandidate, describe_step
from torchslim.report import Candidate, Refusal, Report

# The options that only say how strongly a technique works: a refusal never depends on them.
STRENGTH_KEYS = {"prune": ("ratio", "layer_ratios"), "factorize": ("rank_ratio",), "share": ("bits",)}


def family(plan: PlannedCandidate, upto: int) -> str:
    """``prune(method=channel)``: steps ``0..upto`` of ``plan``, their strengths left out."""
    parts = []
    for step in plan.steps[: upto + 1]:
        options = step.options
        if isinstance(options, Mapping):
            options = {k: v for k, v in options.items() if k not in STRENGTH_KEYS.get(step.name, ())}
        parts.append(describe_step(step.name, options))
    return " -> ".join(parts)


def met_by(plan: PlannedCandidate, refusals: list[Refusal]) -> Refusal | None:
    """The refusal ``plan`` would meet again, if any."""
    known = {r.family: r for r in refusals}
    for i in range(len(plan.steps)):
        if (r := known.get(family(plan, i))) is not None:
            return r
    return None


def pointer(refusal: Refusal) -> str:
    """The short error of every candidate a refusal skipped; the reason is said once, in the report."""
    return f"refused: {refusal.family} cannot handle {refusal.block} (the report's refusals say why and the way out)"


def refused_record(plan: PlannedCandidate, exc: RefusedError, step_index: int) -> Candidate:
    """The record of the candidate that met ``exc``: skipped, carrying the refusal to the report."""
    refusal = Refusal(family=family(plan, step_index), technique=exc.technique, block=exc.block, reason=exc.reason,
                      way_out=exc.way_out, candidates=[plan.name])
    record = Candidate(name=plan.name, steps=plan.step_strings(), status="skipped", error=pointer(refusal),
                       within_budget=False, refined_from=plan.refined_from, refused=refusal.family)
    record._refusal = refusal
    return record


def skipped_record(plan: PlannedCandidate, refusal: Refusal) -> Candidate:
    refusal.candidates.append(plan.name)
    return Candidate(name=plan.name, steps=plan.step_strings(), status="skipped", error=pointer(refusal),
                     within_budget=False, refined_from=plan.refined_from, refused=refusal.family)


def take_refusal(report: Report, record: Candidate) -> None:
    """Move the refusal ``record`` met into the report (once per family)."""
    refusal = record._refusal
    if refusal is None and record.refused:  # lost on the way (another process): the pointer still names it
        refusal = Refusal(family=record.refused, technique=record.refused.split("(")[0], block="?",
                          reason=record.error or "", way_out="", candidates=[record.name])
    if refusal is None:
        return
    record._refusal = None
    known = next((r for r in report.refusals if r.family == refusal.family), None)
    if known is None:
        report.refusals.append(refusal)
    elif record.name not in known.candidates:
        known.candidates.append(record.name)
