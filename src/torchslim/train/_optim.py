"""Optimizers and learning-rate schedules by name.

Every schedule is stepped once per *optimizer* step (not per micro-batch, not per epoch), so
its length is ``total_steps = epochs x steps_per_epoch`` and a resumed run continues it from
the saved ``last_epoch`` counter.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from torchslim.train._config import TrainConfig


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov and config.momentum > 0, weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int, steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
    """The configured schedule over ``total_steps`` optimizer steps."""
    total_steps = max(1, total_steps)
    if config.schedule == "onecycle":
        # OneCycle also cycles momentum (beta1 for Adam) inversely to the LR; that is its design.
        # The peak LR is reached after pct_start x total_steps steps.
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=total_steps, pct_start=config.onecycle_pct_start
        )
    if config.schedule == "cosine":
        warmup = int(round(config.warmup_fraction * total_steps))
        floor = config.min_lr_ratio

        def cosine_with_warmup(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
            return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_with_warmup)
    if config.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.step_epochs * max(1, steps_per_epoch), gamma=config.step_gamma)
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])
