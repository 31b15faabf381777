"""Training: ``fit(model, data, TrainConfig(...))`` — the one explicit loop every technique reuses.

    from torchslim.train import TrainConfig, fit
    result = fit(model, data, TrainConfig(epochs=10, precision="bf16", grad_accum_steps=2))

Mixed precision, gradient accumulation, clipping, LR schedules, activation checkpointing,
torch.compile, early stopping, resumable checkpoints and DDP (under torchrun) are fields of
``TrainConfig``; ``loss_fn``, ``teacher`` and ``hooks`` let QAT, distillation and fine-tuning
plug in without copying the loop. Batch-norm and init helpers live in ``torchslim.train.batchnorm``
and ``torchslim.train.init``. See docs/training.md.
"""

from __future__ import annotations

from torchslim.core.registry import TECHNIQUES, Technique
from torchslim.train._config import TrainConfig, load_train_config
from torchslim.train._distributed import launched_by_torchrun
from torchslim.train._finetune import (
    FinetuneConfig,
    check_finetune_teacher,
    finetune,
    run_step,
    validate_step,
)
from torchslim.train._hidden import HiddenStateKD, hidden_state_loss
from torchslim.train._kd import (
    embedding_loss,
    hidden_state_kd,
    kd_loss,
    kd_output_loss,
    make_kd_loss,
)
from torchslim.train._loop import evaluate, fit
from torchslim.train._state import FitResult, TrainState

__all__ = [
    "FinetuneConfig",
    "run_step",
    "validate_step",
    "check_finetune_teacher",
    "embedding_loss",
    "HiddenStateKD",
    "hidden_state_kd",
    "hidden_state_loss",
    "kd_output_loss",
    "finetune",
    "kd_loss",
    "make_kd_loss","FitResult", "TrainConfig", "TrainState", "evaluate", "fit", "load_train_config",
    "launched_by_torchrun",
]

TECHNIQUES.register("finetune", Technique("finetune", validate_step, run_step, "training from the current weights, early stopping on validation"))
