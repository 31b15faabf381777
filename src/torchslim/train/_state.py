"""What the loop shares with its callers: the per-step state hooks see, and the result."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from torchslim.train._config import TrainConfig
from torchslim.train._distributed import DistInfo


@dataclass
class TrainState:
    """Handed to every hook. Hooks may read anything and set ``stop = True`` to end training
    after the current step (on_step_end) or epoch (on_epoch_end)."""

    model: nn.Module  # the user's module (not the DDP/compile wrapper)
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    config: TrainConfig
    device: torch.device
    dist: DistInfo
    teacher: nn.Module | None = None
    epoch: int = 0  # the current epoch, 1-based
    step: int = 0  # optimizer steps done so far (all epochs)
    loss: float | None = None  # mean training loss of the last optimizer step
    lr: float = 0.0  # the LR the last optimizer step used
    grad_norm: float | None = None  # pre-clip global norm, when clipping is on
    val_accuracy: float | None = None  # the last validation accuracy, or fidelity for embedding data (set at epoch end)
    history: list[dict[str, Any]] = field(default_factory=list)
    stop: bool = False


@dataclass
class Progress:
    """Where the loop stands, and what it must carry across a resume besides the model,
    optimizer and RNG states: the position in the data and the best-epoch bookkeeping."""

    epoch: int = 0  # the current epoch, 0-based (epochs completed so far)
    micro_batch: int = 0  # micro-batches of this epoch consumed so far
    best_val_accuracy: float = -1.0  # fidelity for embedding data
    best_model: dict[str, torch.Tensor] | None = None  # the best epoch's weights, on the CPU
    bad_epochs: int = 0  # epochs in a row without improvement (early stopping)
    epoch_loss: float = 0.0  # this epoch's summed step losses (for the epoch's mean)
    epoch_steps: int = 0
    stopped_early: bool = False  # not checkpointed: a resumed run decides it again

    def next_epoch(self) -> None:
        self.epoch, self.micro_batch, self.epoch_loss, self.epoch_steps = self.epoch + 1, 0, 0.0, 0


@dataclass
class FitResult:
    best_val_accuracy: float  # fidelity to the teacher for embedding data
    epochs_run: int
    history: list[dict] = field(default_factory=list)
    steps: int = 0  # optimizer steps taken in total (resumed runs count the earlier ones)
    stopped_early: bool = False
    checkpoint: Path | None = None  # the resumable checkpoint, when an out dir was given


class Hooks:
    """Calls user hooks: plain callables run after every optimizer step; objects may define
    ``on_step_end(state)`` and/or ``on_epoch_end(state)``."""

    def __init__(self, hooks: Iterable[Any]) -> None:
        self.step_hooks: list[Callable[[TrainState], Any]] = []
        self.epoch_hooks: list[Callable[[TrainState], Any]] = []
        for hook in hooks or ():
            step = getattr(hook, "on_step_end", None)
            epoch = getattr(hook, "on_epoch_end", None)
            if step is None and epoch is None:
                if not callable(hook):
                    from torchslim.errors import ConfigError

                    raise ConfigError(f"Training hook {hook!r} is neither callable nor has on_step_end/on_epoch_end.")
                step = hook
            if step is not None:
                self.step_hooks.append(step)
            if epoch is not None:
                self.epoch_hooks.append(epoch)

    def step_end(self, state: TrainState) -> None:
        for hook in self.step_hooks:
            hook(state)

    def epoch_end(self, state: TrainState) -> None:
        for hook in self.epoch_hooks:
            hook(state)
