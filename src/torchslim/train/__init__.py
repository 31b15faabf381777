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

from torchslim.train._config import TrainConfig, load_train_config
from torchslim.train._loop import evaluate, fit
from torchslim.train._state import FitResult, TrainState

__all__ = ["FitResult", "TrainConfig", "TrainState", "evaluate", "fit", "load_train_config"]
