"""The recipe step: ``prune: {method, ratio, importance, scope, iterations, finetune_epochs, ignore}``."""

from __future__ import annotations

import torch.nn as nn

from torchslim.core.step import StepContext, StepOutput
from torchslim.prune._api import prune
from torchslim.prune._attention import head_count
from torchslim.prune._config import ChannelPruneConfig, parse_prune_config
from torchslim.prune._layers import zero_fraction

UNSTRUCTURED_NOTE = (
    "unstructured sparsity keeps every tensor dense-shaped: dense kernels do the same work, so "
    "expect no speed-up; the file only shrinks when saved sparse or encoded (follow with "
    "`share` and `encode: huffman`)"
)


def validate_step(options: dict | str | None):
    """The typed config for a recipe's ``prune`` step; raises ConfigError naming the bad field."""
    return parse_prune_config(options, where="prune step")


def run_step(model: nn.Module, config, ctx: StepContext) -> StepOutput:
    """Prune a copy of ``model``; fine-tuning rounds (if any) distill from ``ctx.teacher``."""
    config = parse_prune_config(config, where="prune step")
    params_before = sum(p.numel() for p in model.parameters())
    pruned = prune(
        model,
        config,
        data=ctx.data,
        example_inputs=ctx.example_inputs,
        device=ctx.device,
        teacher=ctx.teacher if config.finetune_epochs > 0 else None,
        seed=ctx.seed,
        log=ctx.log,
    )
    params_after = sum(p.numel() for p in pruned.parameters())
    if isinstance(config, ChannelPruneConfig):
        heads_before, heads_after = head_count(model), head_count(pruned)
        heads = f", attention heads {heads_before} -> {heads_after}" if heads_before else ""
        notes = [f"{config.describe()}: channels removed, parameters {params_before:,} -> {params_after:,} "
                 f"({params_after / params_before:.1%} kept){heads}"]
    else:
        notes = [f"{config.describe()}: measured {zero_fraction(pruned):.1%} of Linear/Conv weights are zero; "
                 + UNSTRUCTURED_NOTE]
    return StepOutput(model=pruned, notes=notes)
