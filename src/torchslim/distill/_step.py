"""The recipe step: ``distill: {epochs, temperature, alpha, lr, batch_size, hidden_states, hidden_weight}``
with teacher = ``ctx.teacher``."""

from __future__ import annotations

import copy

import torch.nn as nn

from torchslim.core.step import StepContext, StepOutput
from torchslim.distill._api import distill
from torchslim.distill._config import DistillConfig, parse_distill_config


def validate_step(options: dict | None) -> DistillConfig:
    return parse_distill_config(options, where="distill step")


def run_step(model: nn.Module, config, ctx: StepContext) -> StepOutput:
    """Distill a copy of ``model`` from the unoptimized model (``ctx.teacher``)."""
    config = parse_distill_config(config, where="distill step")
    config = config.model_copy(update={"seed": ctx.seed})
    student = distill(copy.deepcopy(model), ctx.teacher, ctx.data, config, device=ctx.device, log=ctx.log)
    s_params = sum(p.numel() for p in student.parameters())
    t_params = sum(p.numel() for p in ctx.teacher.parameters())
    what = config.describe()
    if ctx.data.task == "embedding":  # temperature and alpha do not apply there
        what = f"distill(epochs={config.epochs}{config.hidden_label()}) of embeddings (loss 1 - cosine to the teacher's"
        what += " plus every layer's per-token states)" if config.hidden_states else ")"
    notes = [f"{what}: student {s_params:,} params learned from the unoptimized teacher ({t_params:,} params)"]
    return StepOutput(model=student, notes=notes)
