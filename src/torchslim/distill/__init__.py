"""Knowledge distillation: a small student learns from a large teacher's soft outputs.

    from torchslim.distill import distill, DistillConfig
    from torchslim.prune import widen_student
    student = widen_student(teacher, 0.5)            # same architecture, half the widths, fresh weights
    distill(student, teacher, data, DistillConfig(epochs=10, temperature=4.0, alpha=0.7))

Transformers whose pruning kept the hidden width can also learn every layer's per-token
states (``DistillConfig(hidden_states=True)``, recipe ``distill: {hidden_states: true}``).

Also the recovery step after pruning or factorization (recipe ``distill:`` step, or
``prune(..., teacher=model)`` for distillation during pruning's fine-tuning rounds).
"""

from __future__ import annotations

from torchslim.core.registry import TECHNIQUES, Technique
from torchslim.distill._api import check_compatible, distill
from torchslim.distill._config import DistillConfig, parse_distill_config
from torchslim.distill._step import run_step, validate_step
from torchslim.train import (
    embedding_loss,
    hidden_state_kd,
    hidden_state_loss,
    kd_loss,
    make_kd_loss,
)

__all__ = [
    "DistillConfig",
    "check_compatible",
    "distill",
    "embedding_loss",
    "hidden_state_kd",
    "hidden_state_loss",
    "kd_loss",
    "make_kd_loss",
    "parse_distill_config",
    "run_step",
    "validate_step",
]

TECHNIQUES.register("distill", Technique("distill", validate_step, run_step, "knowledge distillation from the unoptimized model"))
