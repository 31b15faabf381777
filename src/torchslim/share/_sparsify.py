"""A plain per-layer magnitude prune, the first stage of Deep Compression.

The full pruning toolkit (global/channel pruning, importance scores) lives in
``torchslim.prune``; this is the minimal stage ``torchslim share --prune-ratio`` needs:
zero the smallest weights of every Linear/Conv layer, fine-tune with the zeros held by
``torch.nn.utils.prune`` masks, then make the zeros permanent. Pruning in a few steps to the
final density (geometric schedule) loses less accuracy than one cut, as in the paper.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.utils.prune as torch_prune

from torchslim.errors import ConfigError, UnsupportedError

_PRUNABLE = (nn.Linear, nn.modules.conv._ConvNd)


def magnitude_prune(
    model: nn.Module,
    ratio: float | dict[str, float],
    *,
    data=None,
    finetune_epochs: int = 0,
    steps: int = 1,
    lr: float = 3e-3,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> nn.Module:
    """A copy of ``model`` with the smallest ``ratio`` of each Linear/Conv weight set to zero
    (``ratio`` may map layer names to their own ratio), fine-tuned ``finetune_epochs`` per step."""
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, _PRUNABLE)]
    ratios = ratio if isinstance(ratio, dict) else {n: ratio for n, _ in layers}
    unknown = set(ratios) - {n for n, _ in layers}
    if unknown:
        raise ConfigError(f"prune ratios name layers the model lacks: {sorted(unknown)}.")
    if any(not 0 <= r < 1 for r in ratios.values()):
        raise ConfigError(f"prune ratios must be in [0, 1), got {ratios}.")
    if not layers or not any(ratios.values()):
        raise UnsupportedError(f"magnitude prune would change nothing in {type(model).__name__} (no Linear/Conv layer or all ratios 0).")
    if finetune_epochs and data is None:
        raise ConfigError("magnitude prune: finetune_epochs > 0 needs data to fine-tune on.")
    pruned = copy.deepcopy(model)
    targets = [(pruned.get_submodule(n), ratios[n]) for n, _ in layers if ratios.get(n)]
    for step in range(1, steps + 1):
        for module, r in targets:
            density = (1 - r) ** (step / steps)
            torch_prune.l1_unstructured(module, "weight", amount=round((1 - density) * module.weight.numel()))
        if finetune_epochs:
            from torchslim.train import TrainConfig, fit

            fit(pruned, data, TrainConfig(epochs=finetune_epochs, lr=lr, seed=seed), device=device)
        for module, _ in targets:
            torch_prune.remove(module, "weight")
            with torch.no_grad():
                module.weight.add_(0.0)  # weight * mask leaves -0.0; -0.0 + 0.0 is +0.0
    return pruned.eval()


def sparsity(model: nn.Module) -> float:
    """Share of exactly-zero values among the Linear/Conv weights."""
    weights = [m.weight for m in model.modules() if isinstance(m, _PRUNABLE)]
    total = sum(w.numel() for w in weights)
    return sum(int((w == 0).sum()) for w in weights) / max(total, 1)
