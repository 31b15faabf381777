"""The search to the edge of the budget (the recipe's ``search:``).

A recipe names one strength per candidate (prune 90%, 5-bit sharing, rank ratio 0.5). When a
family lands outside the accuracy budget at that strength, a weaker setting may fit; under the
``size`` objective a family well inside the budget has room for a stronger one. Each such
family is retried by bisection on one knob, each try a candidate of its own (named
``<family>.<knob>-<value>``, ``refined_from`` the family), at most ``max_tries`` per family:

    prune      ratio       bisected on the log of the density kept (1 - ratio): 90% and 99%
                           differ by 10x in the file, 40% and 49% hardly at all
    factorize  rank_ratio  bisected geometrically
    share      bits        bisected over whole bits

Bounds: a knob's weakest setting (no pruning, full rank, 8 bits) is taken as within budget and
its strongest (99% pruned, rank ratio 0.05, 1 bit) as the far end. For magnitude pruning the
tries allocate per-layer ratios from the recipe's sensitivity pass (``_allocate``); the first
try then re-runs the recipe's own strength, allocated. ``--time-budget`` bounds it like every
candidate: a skipped try ends that family's search, and so does a failed one (factorize refuses
rank ratios that would change no layer: bisecting further toward them only repeats the refusal).
A family whose steps a technique refused up front (``errors.RefusedError``, said once in the
report's ``refusals``) gets no tries at all: the refusal holds at every strength.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torchslim.core.log import say
from torchslim.core.notes import Note
from torchslim.errors import ConfigError
from torchslim.pipeline._allocate import allocate_ratios
from torchslim.pipeline._recipe import PlannedCandidate, PlannedStep, SearchSpec, plan_step
from torchslim.pipeline._select import accuracy_drop_points
from torchslim.report import Candidate


@dataclass(frozen=True)
class Knob:
    step: str
    key: str
    weakest: float  # assumed within budget: this knob compresses nothing there
    strongest: float
    scale: str  # "density" | "geometric" | "bits"

    def midpoint(self, good: float, bad: float) -> float | None:
        """The next setting between a known-good and a known-bad one; None once they are adjacent."""
        if self.scale == "bits":
            mid = int(round((good + bad) / 2))
            return None if abs(good - bad) <= 1 else mid
        if self.scale == "density":
            a, b = 1.0 - good, 1.0 - bad
            if max(a, b) / max(min(a, b), 1e-9) < 1.15:
                return None
            return round(1.0 - math.sqrt(a * b), 4)
        if max(good, bad) / max(min(good, bad), 1e-9) < 1.15:
            return None
        return round(math.sqrt(good * bad), 4)


KNOBS = {
    "prune": Knob("prune", "ratio", 0.0, 0.99, "density"),
    "factorize": Knob("factorize", "rank_ratio", 1.0, 0.05, "geometric"),
    "share": Knob("share", "bits", 8, 1, "bits"),
}


def _options(step: PlannedStep) -> dict:
    if isinstance(step.options, Mapping):
        return dict(step.options)
    return {"method": step.options} if isinstance(step.options, str) else {}


def find_knob(plan: PlannedCandidate) -> tuple[int, Knob, float] | None:
    """(step index, knob, its value) of the first step whose strength can move."""
    for index, step in enumerate(plan.steps):
        knob = KNOBS.get(step.name)
        if knob is None:
            continue
        value = _options(step).get(knob.key, getattr(step.config, knob.key, None))
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value != knob.weakest:
            return index, knob, value
    return None


def _allocates(spec: SearchSpec, step: PlannedStep, sensitivity: dict | None) -> bool:
    options = _options(step)
    method = options.get("method", getattr(step.config, "method", "magnitude"))
    return (spec.allocate and step.name == "prune" and method == "magnitude" and not options.get("layer_ratios")
            and bool(allocate_ratios(sensitivity, 0.5)))


def choose_families(spec: SearchSpec, results: list[Candidate], plans: Mapping[str, PlannedCandidate],
                    objective: str, baseline, budget: float) -> list[str]:
    """The families worth a search, most promising first: those outside the budget, and under
    ``size`` those well inside it too; under ``size`` the smallest first (the most to gain by a
    weaker or a stronger setting), otherwise the most accurate first."""
    measured = [c for c in results if c.status == "ok" and c.metrics is not None and c.refined_from is None
                and c.name in plans and find_knob(plans[c.name]) is not None]
    inside = [] if objective != "size" else sorted(
        (c for c in measured if c.within_budget and accuracy_drop_points(baseline, c.metrics) <= spec.inside * budget),
        key=lambda c: c.metrics.size_bytes)
    outside = sorted((c for c in measured if not c.within_budget), key=lambda c: -c.metrics.accuracy)
    chosen = sorted([*inside, *outside], key=lambda c: c.metrics.size_bytes) if objective == "size" else outside
    return [c.name for c in chosen][: spec.max_families]


@dataclass
class _Family:
    """One family's bisection: ``good`` is the strongest setting known (or assumed) within
    budget, ``bad`` the weakest known outside it (or the knob's far end when pushing)."""

    plan: PlannedCandidate
    index: int
    knob: Knob
    value: float  # the recipe's own setting
    good: float
    bad: float
    allocate: bool
    push: bool  # may go past the recipe's strength (size objective)


def _start(spec: SearchSpec, plan: PlannedCandidate, result: Candidate, sensitivity: dict | None, push: bool) -> _Family:
    index, knob, value = find_knob(plan)
    good, bad = (value, knob.strongest) if result.within_budget else (knob.weakest, value)
    return _Family(plan, index, knob, value, good, bad, _allocates(spec, plan.steps[index], sensitivity), push)


def _try_plan(fam: _Family, target: float, sensitivity: dict | None, step_table, taken: set[str]) -> PlannedCandidate:
    options = _options(fam.plan.steps[fam.index])
    options[fam.knob.key] = target
    suffix = ""
    if fam.allocate:
        options["layer_ratios"] = allocate_ratios(sensitivity, target)
        suffix = "-per-layer"
    name = f"{fam.plan.name}.{fam.knob.key.replace('_', '-')}-{target:g}{suffix}"
    while name in taken:
        name += "-again"
    steps = list(fam.plan.steps)
    steps[fam.index] = plan_step(fam.knob.step, copy.deepcopy(options), f"steps[{fam.index}].{fam.knob.step}",
                                 f"search of {fam.plan.name}", step_table)
    return PlannedCandidate(name, steps, fam.plan.runtime, fam.plan.devices, refined_from=fam.plan.name,
                            runtime_settings=fam.plan.runtime_settings)


def _search_family(fam: _Family, spec: SearchSpec, sensitivity: dict | None, step_table, taken: set[str],
                   run_one: Callable[[PlannedCandidate, str], Candidate], refused: Callable | None = None) -> list[Candidate]:
    tries: list[Candidate] = []
    # Per-layer allocation changes the shape of the pruning: first the recipe's own strength, allocated.
    pending: float | None = fam.value if fam.allocate else None
    while len(tries) < spec.max_tries:
        target = pending if pending is not None else fam.knob.midpoint(fam.good, fam.bad)
        pending = None
        if target is None:
            break
        try:
            plan = _try_plan(fam, target, sensitivity, step_table, taken)
        except ConfigError as e:
            say(f"search: {fam.plan.name} at {fam.knob.key}={target:g} is not valid, not run ({e.message})")
            break
        if refused is not None and (refusal := refused(plan)) is not None:  # not a matter of strength
            say(f"search: {fam.plan.name} is not tried further: {refusal.family} was refused ({refusal.block})")
            break
        taken.add(plan.name)
        between = f"between {fam.good:g} and {fam.bad:g}"
        record = run_one(plan, f"search {fam.plan.name} [{len(tries) + 1}/{spec.max_tries}]")
        text = (f"edge search of {fam.plan.name}, try {len(tries) + 1}/{spec.max_tries}: {fam.knob.key}={target:g} "
                f"({'per-layer ratios from sensitivity, ' if fam.allocate else ''}bisecting {between}): "
                f"{'within' if record.within_budget else 'outside'} budget")
        if text not in record.note_texts():  # a try kept from the run being resumed has it already
            record.notes.append(Note(kind="technique", text=text))
        tries.append(record)
        if record.status != "ok":  # skipped (time), or failed: a refused setting says nothing about the budget
            break
        if record.within_budget:
            fam.good = target
            if target == fam.bad:  # the recipe's strength fits once allocated: go further only when pushing
                fam.bad = fam.knob.strongest if fam.push else target
        else:
            fam.bad = target
    return tries


def search_stage(spec: SearchSpec, results: list[Candidate], plans: Mapping[str, PlannedCandidate],
                 sensitivity: dict | None, step_table: Mapping[str, Any] | None, objective: str, baseline,
                 budget: float, run_one: Callable[[PlannedCandidate, str], Candidate],
                 refused: Callable | None = None) -> list[Candidate]:
    """Bisect each chosen family's strength; ``run_one(plan, label)`` runs (and records) a try.

    ``refused(plan)`` returns the up-front refusal (``Report.refusals``) a try would meet
    again, or None: a refusal does not depend on the strength, so no try is spent on it."""
    families = choose_families(spec, results, plans, objective, baseline, budget)
    if not families:
        say("search: every family is within budget at the recipe's strength (or has nothing to tune)")
        return []
    say(f"search: retrying {', '.join(families)} at other strengths (at most {spec.max_tries} tries each)")
    taken = {c.name for c in results} | set(plans)
    by_name = {c.name: c for c in results}
    tries: list[Candidate] = []
    for name in families:
        fam = _start(spec, plans[name], by_name[name], sensitivity, push=objective == "size")
        tries += _search_family(fam, spec, sensitivity, step_table, taken, run_one, refused)
    return tries
