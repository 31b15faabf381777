"""Fine-tuning: a few epochs on the train split from the current weights, by distillation
from a teacher when one is given (pruning's recovery rounds, the recipe's ``finetune`` step)."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch.nn as nn
from pydantic import BaseModel, ConfigDict, Field

from torchslim.core.step import StepContext, StepOutput
from torchslim.data import DataBundle
from torchslim.errors import ConfigError, validate_options
from torchslim.train._config import TrainConfig
from torchslim.train._kd import hidden_state_kd, make_kd_loss
from torchslim.train._loop import fit


def finetune(
    model: nn.Module,
    data: DataBundle,
    *,
    epochs: int,
    lr: float,
    device,
    seed: int = 0,
    teacher: nn.Module | None = None,
    log: Callable[[str], None] | None = None,
    patience: int | None = None,
    hidden_states: bool = False,
) -> None:
    """A few epochs on the train split; with a ``teacher``, by knowledge distillation.

    Embedding data has no labels, so there it needs the ``teacher`` (the unpruned model):
    the student relearns the teacher's embeddings and the best epoch is picked by fidelity.
    ``hidden_states`` adds the per-token hidden-state loss of every transformer layer
    (``hidden_state_kd``; needs the teacher and a kept hidden width).
    """
    check_finetune_teacher(data, teacher)
    if hidden_states and teacher is None:
        raise ConfigError("fine-tuning: hidden-state distillation (finetune_hidden_states) learns from a teacher's "
                          "layers: pass teacher=<the unoptimized model>, or set finetune_hidden_states: false.")
    config = TrainConfig(epochs=epochs, lr=lr, seed=seed, early_stopping_patience=patience)
    fit_teacher = teacher if data.task != "classification" else None
    if hidden_states:
        with hidden_state_kd(model, teacher, task=data.task) as loss_fn:
            loss_fn.check(data.example_inputs(2, split="train"))
            fit(model, data, config, device=device, loss_fn=loss_fn, log=log, teacher=fit_teacher)
        return
    loss_fn = make_kd_loss(teacher, task=data.task) if teacher is not None else None
    fit(model, data, config, device=device, loss_fn=loss_fn, log=log, teacher=fit_teacher)


def check_finetune_teacher(data: DataBundle, teacher: nn.Module | None) -> None:
    """ConfigError when fine-tuning has nothing to learn from: unlabeled data and no teacher."""
    if data.task != "classification" and teacher is None:
        raise ConfigError(
            f"fine-tuning: {data.spec!r} is {data.task} data without labels, so fine-tuning learns from a "
            "teacher: pass teacher=<the unoptimized model> (prune() and the recipe's prune and finetune steps "
            "do), or set finetune_epochs: 0 and follow with a distill step."
        )




class FinetuneConfig(BaseModel):
    """Options of the ``finetune`` step: train from the current weights on the train split,
    stopping early when the validation metric stops improving."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    epochs: int = Field(3, ge=1, le=1000, description="at most this many passes over the train split")
    lr: float = Field(1e-3, gt=0, le=1.0, description="peak learning rate (OneCycle)")
    patience: int | None = Field(2, ge=1, description="stop after this many epochs without improvement (None: never)")

    def describe(self) -> str:
        return f"finetune(epochs={self.epochs}, lr={self.lr:g})"


def validate_step(options: dict | None) -> FinetuneConfig:
    return validate_options(FinetuneConfig, options, "finetune step options", example="{epochs: 2}")


def run_step(model: nn.Module, config: FinetuneConfig, ctx: StepContext) -> StepOutput:
    """Unlabeled (embedding) data is fine-tuned by distillation from the unoptimized model."""
    student = copy.deepcopy(model)
    teacher = ctx.teacher if ctx.data.task != "classification" else None
    finetune(student, ctx.data, epochs=config.epochs, lr=config.lr, device=ctx.device, seed=ctx.seed,
             teacher=teacher, log=ctx.log, patience=config.patience)
    return StepOutput(model=student.eval(), notes=[f"{config.describe()} on the train split"])
