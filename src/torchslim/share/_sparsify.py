"""The magnitude-pruning stage of Deep Compression, as ``torchslim.prune`` does it.

``torchslim share --prune-ratio`` and ``deep_compress`` call this thin adapter so that the
pruning itself (L1 per layer, rounds of prune -> fine-tune with the zeros held by masks, masks
made permanent) lives in one place: ``torchslim.prune``.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from torchslim.errors import ConfigError


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
    from torchslim.prune import MagnitudePruneConfig, prune

    per_layer = ratio if isinstance(ratio, dict) else {}
    base = 0.0 if per_layer else ratio
    if per_layer and not any(per_layer.values()) or not per_layer and not base:
        raise ConfigError("magnitude prune: every ratio is 0, so it would change nothing.")
    config = MagnitudePruneConfig(ratio=base, layer_ratios=per_layer, iterations=steps,
                                  finetune_epochs=finetune_epochs, finetune_lr=lr)
    pruned = prune(model, config, data=data, device=device, seed=seed)
    with torch.no_grad():
        for module in pruned.modules():
            if isinstance(getattr(module, "weight", None), torch.Tensor):
                module.weight.add_(0.0)  # weight * mask leaves -0.0; -0.0 + 0.0 is +0.0
    return pruned


def sparsity(model: nn.Module) -> float:
    """Share of exactly-zero values among the Linear/Conv weights."""
    from torchslim.prune import zero_fraction

    return zero_fraction(model)
