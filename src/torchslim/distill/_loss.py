"""The distillation loss (Hinton et al., 2015) and the ``loss_fn`` the training engine calls."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from torchslim.data import as_args
from torchslim.errors import ConfigError


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor | None,
    *,
    temperature: float = 4.0,
    alpha: float = 0.7,
) -> torch.Tensor:
    """``alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(student, targets)``.

    ``alpha`` weighs the soft targets, as in Hinton et al. and seeds 001/004.

    The KL is averaged over the batch (``batchmean``, the true KL per sample). Its gradients
    shrink as 1/T^2 when T grows, so the T^2 factor keeps the soft and hard terms on the same
    scale whatever T is. ``targets=None`` (no labels) or ``alpha=1`` gives the pure soft loss.
    """
    if student_logits.shape != teacher_logits.shape:
        raise ConfigError(
            f"distill: the teacher's output shape {tuple(teacher_logits.shape)} differs from the student's "
            f"{tuple(student_logits.shape)}; both must predict the same classes."
        )
    t = temperature
    soft = F.kl_div(
        F.log_softmax(student_logits / t, dim=-1),
        F.log_softmax(teacher_logits / t, dim=-1),
        reduction="batchmean",
        log_target=True,
    ) * (t * t)
    if targets is None or alpha == 1:
        return soft
    hard = F.cross_entropy(student_logits, targets)
    return alpha * soft + (1.0 - alpha) * hard


def make_kd_loss(teacher: nn.Module, config) -> Callable[[torch.Tensor, torch.Tensor, object], torch.Tensor]:
    """``loss_fn(outputs, targets, inputs)`` for ``torchslim.train.fit``: the teacher sees the
    same inputs, in eval mode and under no_grad (it costs one extra forward, no backward)."""
    teacher.eval()

    def loss_fn(outputs: torch.Tensor, targets: torch.Tensor, inputs) -> torch.Tensor:
        with torch.no_grad():
            teacher_out = teacher(*as_args(inputs))
        if isinstance(outputs, (tuple, list)):
            outputs = outputs[0]
        if isinstance(teacher_out, (tuple, list)):
            teacher_out = teacher_out[0]
        return kd_loss(outputs, teacher_out, targets, temperature=config.temperature, alpha=config.alpha)

    return loss_fn
