"""Unstructured L1 magnitude pruning, per layer (``magnitude``) or ranked across layers
(``global``), with an iterative prune -> fine-tune schedule, made permanent at the end.

The masks are parametrizations (``torch.nn.utils.parametrize``): every *read* of a pruned
weight returns ``original * mask``, computed afresh, so pruned entries stay exactly zero
through fine-tuning whoever reads the weight. ``torch.nn.utils.prune``'s forward pre-hook
only recomputes ``weight`` when the module itself is called, which breaks modules whose
weights another module reads: ``nn.MultiheadAttention`` reads ``out_proj.weight`` (and its
own ``in_proj_weight``) without calling ``out_proj``, so the masked weight would be one tensor
computed at pruning time, and the second training step would backprop through its freed
graph ("Trying to backward through the graph a second time"). ``remove_parametrizations``
folds each mask into a plain parameter at the end: no masks, no ``original``, no hooks.

Each round ``i`` of ``n`` targets a total sparsity of ``1 - (1 - ratio)^(i/n)``. Weights
already pruned are exactly zero, so they rank lowest and stay pruned; the amount we ask for
is a count of weights (not a fraction of the remaining ones), which makes every round hit its
target exactly.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.utils.parametrize as parametrize
import torch.nn.utils.prune as torch_prune

from torchslim.errors import ConfigError
from torchslim.prune._config import GlobalPruneConfig, MagnitudePruneConfig
from torchslim.prune._layers import check_module_names, prunable_weights
from torchslim.train import finetune

Weights = dict[str, tuple[nn.Module, tuple[str, ...]]]


class _Mask(nn.Module):
    """The parametrization: ``weight -> weight * mask`` (the mask a buffer, saved with the model)."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask


def prune_unstructured(model: nn.Module, config: MagnitudePruneConfig | GlobalPruneConfig, ctx) -> nn.Module:
    """Prune ``model`` in place (the caller passes a copy) and return it."""
    weights = _chosen_weights(model, config)
    is_global = isinstance(config, GlobalPruneConfig)
    if is_global and config.layer_ratios:
        raise ConfigError("prune.layer_ratios: per-layer ratios contradict global ranking; use method: magnitude with layer_ratios.")
    if config.finetune_epochs > 0 and ctx.data is None:
        raise ConfigError("prune.finetune_epochs > 0 needs training data: pass data= (or finetune_epochs: 0).")
    try:
        for round_index in range(1, config.iterations + 1):
            fraction = round_index / config.iterations
            if is_global:
                _mask_smallest([(m, a) for m, attrs in weights.values() for a in attrs], _scheduled(config.ratio, fraction))
            else:
                for name, (module, attrs) in weights.items():
                    sparsity = _scheduled(config.layer_ratios.get(name, config.ratio), fraction)
                    for attr in attrs:  # q, k and v of a MultiheadAttention each at the layer's ratio
                        _mask_smallest([(module, attr)], sparsity)
            ctx.log(f"prune round {round_index}/{config.iterations}: target sparsity {_scheduled(config.ratio, fraction):.1%}")
            if config.finetune_epochs > 0:
                finetune(model, ctx.data, epochs=config.finetune_epochs, lr=config.finetune_lr, device=ctx.device,
                         seed=ctx.seed, teacher=ctx.teacher, log=ctx.log, hidden_states=config.finetune_hidden_states)
    finally:
        # Also on failure: the caller's copy must not keep half-applied masks.
        for module, attrs in weights.values():
            for attr in attrs:
                if _mask_of(module, attr) is not None:  # (a user's own parametrization is baked in with it)
                    parametrize.remove_parametrizations(module, attr, leave_parametrized=True)
    return model


def _scheduled(ratio: float, fraction: float) -> float:
    """Sparsity after ``fraction`` of the rounds: density shrinks geometrically, (1 - ratio)^fraction,
    so every round removes the same share of what is left (as in Deep Compression's iterative
    pruning); equal steps in sparsity would make the last rounds cut the surviving weights hardest."""
    return 1.0 - (1.0 - ratio) ** fraction


def _chosen_weights(model: nn.Module, config) -> Weights:
    available = prunable_weights(model, config.layer_types)
    check_module_names(model, config.ignore, "prune.ignore")
    check_module_names(model, list(config.layer_ratios), "prune.layer_ratios", allowed=available)
    ignored = set(config.ignore)
    # Ignoring a container ignores every layer inside it.
    weights = {n: w for n, w in available.items() if not any(n == i or n.startswith(i + ".") for i in ignored)}
    if not weights:
        raise ConfigError(
            f"prune: no {'/'.join(config.layer_types)} layers left to prune in {type(model).__name__} "
            f"(layer_types={config.layer_types}, ignore={config.ignore}). Widen layer_types or shorten ignore."
        )
    return weights


@torch.no_grad()
def _mask_smallest(tensors: list[tuple[nn.Module, str]], sparsity: float) -> None:
    """Mask the ``sparsity`` fraction of smallest-magnitude entries over ``tensors`` together
    (one tensor: per-layer pruning; several: ``global_unstructured``'s single ranking)."""
    current = [getattr(m, a) for m, a in tensors]  # the masked values once parametrized: zeros rank first
    total = sum(w.numel() for w in current)
    count = int(round(sparsity * total))
    if count == 0:
        return
    flat = torch.cat([w.detach().abs().flatten() for w in current])
    keep = torch.ones_like(flat)
    keep[torch.topk(flat, count, largest=False).indices] = 0  # the same ranking as L1Unstructured
    for (module, attr), piece in zip(tensors, torch.split(keep, [w.numel() for w in current]), strict=True):
        mask = piece.view_as(getattr(module, attr))
        existing = _mask_of(module, attr)
        if existing is not None:
            existing.mask.copy_(mask)
        else:
            parametrize.register_parametrization(module, attr, _Mask(mask))


def _mask_of(module: nn.Module, attr: str) -> _Mask | None:
    """Our mask on ``module.attr`` (a user's own parametrization, e.g. weight norm, is not one)."""
    if not parametrize.is_parametrized(module, attr):
        return None
    return next((p for p in getattr(module.parametrizations, attr) if isinstance(p, _Mask)), None)


def leftover_masks(model: nn.Module) -> list[str]:
    """Names of modules still carrying pruning masks, parametrizations or ``weight_orig`` (should be none)."""
    found = []
    for name, module in model.named_modules():
        has_mask = any(n.endswith("_mask") for n, _ in module.named_buffers(recurse=False))
        has_orig = any(n.endswith("_orig") for n, _ in module.named_parameters(recurse=False))
        has_ours = parametrize.is_parametrized(module) and any(_mask_of(module, a) is not None for a in module.parametrizations)
        if has_mask or has_orig or has_ours or torch_prune.is_pruned(module) and not list(module.children()):
            found.append(name or type(module).__name__)
    return found
