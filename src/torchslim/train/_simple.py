from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from torchslim.data import DataBundle, as_args, loader, to_device


@dataclass
class TrainConfig:
    epochs: int = 20
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0


@dataclass
class FitResult:
    best_val_accuracy: float
    epochs_run: int
    history: list[dict] = field(default_factory=list)


def fit(
    model: nn.Module,
    data: DataBundle,
    config: TrainConfig | None = None,
    *,
    device: str | torch.device = "cpu",
    loss_fn: Callable | None = None,
    log: Callable[[str], None] | None = None,
) -> FitResult:
    """Train ``model`` in place on ``data.train``; keep the weights with the best val accuracy."""
    from torchslim.bench import accuracy

    config = config or TrainConfig()
    torch.manual_seed(config.seed)
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    train_loader = loader(data.train, config.batch_size, shuffle=True, device=device, seed=config.seed)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, epochs=config.epochs, steps_per_epoch=len(train_loader))
    loss_fn = loss_fn or (lambda out, y, _x: F.cross_entropy(out, y))
    best, best_state, history = -1.0, None, []
    for epoch in range(config.epochs):
        model.train()
        for x, y in train_loader:
            x, y = to_device(x, device), y.to(device)
            loss = loss_fn(model(*as_args(x)), y, x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        val_acc = accuracy(model, data.val, device=device)
        history.append({"epoch": epoch + 1, "loss": loss.item(), "val_accuracy": val_acc})
        if log:
            log(f"epoch {epoch + 1}/{config.epochs} loss {loss.item():.4f} val_acc {val_acc:.4f}")
        if val_acc >= best:
            best, best_state = val_acc, copy.deepcopy(model.state_dict())
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return FitResult(best, config.epochs, history)
