"""Low-rank factorization: truncated SVD of Linear and Conv layers.

    slim = factorize(model, FactorizeConfig(energy=0.9), data=bundle)   # a new nn.Module

Each layer's rank comes from ``rank_ratio`` (share of its full rank) or ``energy`` (share
of its squared singular values kept); layers where the two thin layers would not save at
least ``min_saving`` of the MACs are left as they are. The result is an ordinary module
(nested ``nn.Sequential`` pairs) that trains, exports and saves like the original.
"""

from __future__ import annotations

from torchslim.core.registry import TECHNIQUES, Technique
from torchslim.factorize._factorize import (
    FactorizeConfig,
    LayerPlan,
    factorize,
    plan,
    read_elsewhere,
    validate_config,
)
from torchslim.factorize._svd import factorize_layer, is_factorizable


def validate_step(options: dict | None) -> FactorizeConfig:
    return validate_config(options, "factorize step options")


def run_step(model, config: FactorizeConfig, ctx):
    from torchslim.core.step import StepOutput

    rows = plan(model, config, ctx.example_inputs)
    layers = [p for p in rows if p.factorized]
    result = factorize(model, config, data=ctx.data, device=ctx.device, log=ctx.log)
    before = sum(p.cost_before for p in layers)
    after = sum(p.cost_after for p in layers)
    notes = [f"factorized {len(layers)} layers ({config.rule}): their weights and MACs {before:,} -> {after:,}"]
    if kept := [p for p in rows if p.reason.startswith("left alone")]:
        notes.append("not factorized: " + "; ".join(f"{p.name} ({p.reason.removeprefix('left alone: ')})" for p in kept))
    return StepOutput(model=result, notes=notes)


__all__ = [
    "FactorizeConfig",
    "LayerPlan",
    "factorize",
    "factorize_layer",
    "is_factorizable",
    "plan",
    "read_elsewhere",
    "run_step",
    "validate_step",
]

TECHNIQUES.register("factorize", Technique("factorize", validate_step, run_step, "low-rank factorization of Linear/Conv layers"))
