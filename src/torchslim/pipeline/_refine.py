"""The optional second stage: variants of the most promising candidate's family.

The family is the best candidate within budget that has something to tune; when nothing
tunable is within budget, the most accurate measured one (a ratio that went too far is the
common case, and a smaller ratio may fit). Variants move its ratio by each of
``ratio_deltas`` and keep the most sensitive layers (from the sensitivity probe) out of its
pruning/quantization. Every variant is validated by its technique again, like a recipe.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from torchslim.core.log import say
from torchslim.errors import ConfigError
from torchslim.pipeline._recipe import PlannedCandidate, RefineSpec, plan_step
from torchslim.pipeline._select import rank
from torchslim.pipeline._sensitivity import most_sensitive
from torchslim.report import Candidate

RATIO_KNOBS = {"prune": "ratio", "factorize": "rank_ratio"}  # step -> the option a delta moves
SKIP_KNOBS = {"prune": "ignore", "quantize": "skip"}  # step -> the option listing layers to leave alone


def _tunable(plan: PlannedCandidate, skip_layers: list[str]) -> bool:
    return any(s.name in RATIO_KNOBS or (skip_layers and s.name in SKIP_KNOBS) for s in plan.steps)


def choose_family(results: list[Candidate], plans: Mapping[str, PlannedCandidate], skip_layers: list[str],
                  objective: str = "latency", baseline=None) -> str | None:
    """The candidate to refine around: the chosen objective's best tunable one, else the most
    accurate tunable one outside the budget."""
    measured = [c for c in results if c.status == "ok" and c.metrics is not None and c.refined_from is None]
    over_budget = sorted((c for c in measured if not c.within_budget), key=lambda c: -c.metrics.accuracy)
    for c in [*rank(measured, objective, baseline=baseline), *over_budget]:
        if c.name in plans and _tunable(plans[c.name], skip_layers):
            return c.name
    return None


def _current(step, key: str) -> Any:
    if isinstance(step.options, Mapping) and key in step.options:
        return step.options[key]
    return getattr(step.config, key, None)


def refine_plans(spec: RefineSpec, results: list[Candidate], plans: Mapping[str, PlannedCandidate],
                 sensitivity: dict | None, step_table: Mapping[str, Any] | None, objective: str = "latency",
                 baseline=None) -> list[PlannedCandidate]:
    """The second-stage candidates (possibly none), named ``<family>.ratio-0.6`` / ``<family>.keep-2-sensitive``."""
    skip_layers = most_sensitive(sensitivity, spec.skip_sensitive)
    family = choose_family(results, plans, skip_layers, objective, baseline)
    if family is None:
        say("refine: no measured candidate has a ratio to tune or layers to keep; no second stage")
        return []
    base = plans[family]
    variants: list[tuple[str, int, dict]] = []  # (name, step index, new options)
    for index, step in enumerate(base.steps):
        key = RATIO_KNOBS.get(step.name)
        value = _current(step, key) if key else None
        if isinstance(value, (int, float)):
            for delta in spec.ratio_deltas:
                new = round(float(value) + delta, 4)
                if 0.0 < new < 1.0:
                    options = dict(step.options) if isinstance(step.options, Mapping) else {}
                    options[key] = new
                    variants.append((f"{family}.{key.replace('_', '-')}-{new:g}", index, options))
            break
    if skip_layers:
        for index, step in enumerate(base.steps):
            if step.name in SKIP_KNOBS:
                key = SKIP_KNOBS[step.name]
                options = dict(step.options) if isinstance(step.options, Mapping) else {}
                options[key] = list(dict.fromkeys([*(options.get(key) or []), *skip_layers]))
                variants.append((f"{family}.keep-{len(skip_layers)}-sensitive", index, options))
                break
    out: list[PlannedCandidate] = []
    taken = {c.name for c in results} | set(plans)
    for name, index, options in variants:
        if name in taken or len(out) >= spec.max_candidates:
            continue
        steps = list(base.steps)
        try:
            steps[index] = plan_step(steps[index].name, copy.deepcopy(options), f"steps[{index}].{steps[index].name}",
                                     f"refine of {family}", step_table)
        except ConfigError as e:
            say(f"refine: variant {name} is not valid, not run ({e.message})")
            continue
        out.append(PlannedCandidate(name, steps, base.runtime, base.devices, refined_from=family,
                                    runtime_settings=base.runtime_settings))
        taken.add(name)
    say(f"refine: {len(out)} variant(s) of {family}: {', '.join(p.name for p in out) or 'none'}")
    return out
