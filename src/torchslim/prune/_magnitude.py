"""Unstructured L1 magnitude pruning, per layer (``magnitude``) or ranked across layers
(``global``), with an iterative prune -> fine-tune schedule, made permanent at the end.

We use ``torch.nn.utils.prune`` for the masks themselves: during fine-tuning its forward
pre-hook keeps pruned weights at zero (gradients reach ``weight_orig`` but the mask zeroes
them again each forward). ``prune.remove`` then folds each mask into a plain ``weight``
parameter, so the returned model holds no masks, no ``weight_orig`` and no hooks.

Each round ``i`` of ``n`` targets a total sparsity of ``ratio * i / n``. Weights already
pruned are exactly zero, so they rank lowest and stay pruned; the amount we ask for is a
count of weights (not a fraction of the remaining ones), which makes every round hit its
target exactly.
"""

from __future__ import annotations

import torch.nn as nn
import torch.nn.utils.prune as torch_prune

from torchslim.errors import ConfigError
from torchslim.prune._config import GlobalPruneConfig, MagnitudePruneConfig
from torchslim.prune._layers import check_module_names, prunable_layers
from torchslim.train import finetune


def prune_unstructured(model: nn.Module, config: MagnitudePruneConfig | GlobalPruneConfig, ctx) -> nn.Module:
    """Prune ``model`` in place (the caller passes a copy) and return it."""
    layers = _chosen_layers(model, config)
    is_global = isinstance(config, GlobalPruneConfig)
    if is_global and config.layer_ratios:
        raise ConfigError("prune.layer_ratios: per-layer ratios contradict global ranking; use method: magnitude with layer_ratios.")
    if config.finetune_epochs > 0 and ctx.data is None:
        raise ConfigError("prune.finetune_epochs > 0 needs training data: pass data= (or finetune_epochs: 0).")
    for round_index in range(1, config.iterations + 1):
        fraction = round_index / config.iterations
        if is_global:
            _prune_global(layers, _scheduled(config.ratio, fraction))
        else:
            for name, module in layers.items():
                _prune_layer(module, _scheduled(config.layer_ratios.get(name, config.ratio), fraction))
        ctx.log(f"prune round {round_index}/{config.iterations}: target sparsity {_scheduled(config.ratio, fraction):.1%}")
        if config.finetune_epochs > 0:
            finetune(model, ctx.data, epochs=config.finetune_epochs, lr=config.finetune_lr, device=ctx.device,
                     seed=ctx.seed, teacher=ctx.teacher, log=ctx.log, hidden_states=config.finetune_hidden_states)
    for module in layers.values():
        if torch_prune.is_pruned(module):
            torch_prune.remove(module, "weight")
    return model


def _scheduled(ratio: float, fraction: float) -> float:
    """Sparsity after ``fraction`` of the rounds: density shrinks geometrically, (1 - ratio)^fraction,
    so every round removes the same share of what is left (as in Deep Compression's iterative
    pruning); equal steps in sparsity would make the last rounds cut the surviving weights hardest."""
    return 1.0 - (1.0 - ratio) ** fraction


def _chosen_layers(model: nn.Module, config) -> dict[str, nn.Module]:
    available = prunable_layers(model, config.layer_types)
    check_module_names(model, config.ignore, "prune.ignore")
    check_module_names(model, list(config.layer_ratios), "prune.layer_ratios", allowed=available)
    ignored = set(config.ignore)
    # Ignoring a container ignores every layer inside it.
    layers = {n: m for n, m in available.items() if not any(n == i or n.startswith(i + ".") for i in ignored)}
    if not layers:
        raise ConfigError(
            f"prune: no {'/'.join(config.layer_types)} layers left to prune in {type(model).__name__} "
            f"(layer_types={config.layer_types}, ignore={config.ignore}). Widen layer_types or shorten ignore."
        )
    return layers


def _prune_layer(module: nn.Module, sparsity: float) -> None:
    count = int(round(sparsity * module.weight.numel()))
    if count == 0:
        return
    if torch_prune.is_pruned(module):
        torch_prune.remove(module, "weight")  # zeros stay zeros: they rank first again
    torch_prune.l1_unstructured(module, "weight", amount=count)


def _prune_global(layers: dict[str, nn.Module], sparsity: float) -> None:
    total = sum(m.weight.numel() for m in layers.values())
    count = int(round(sparsity * total))
    if count == 0:
        return
    for module in layers.values():
        if torch_prune.is_pruned(module):
            torch_prune.remove(module, "weight")
    torch_prune.global_unstructured(
        [(m, "weight") for m in layers.values()], pruning_method=torch_prune.L1Unstructured, amount=count
    )


def leftover_masks(model: nn.Module) -> list[str]:
    """Names of modules still carrying pruning masks or ``weight_orig`` (should be none)."""
    found = []
    for name, module in model.named_modules():
        has_mask = any(n.endswith("_mask") for n, _ in module.named_buffers(recurse=False))
        has_orig = any(n.endswith("_orig") for n, _ in module.named_parameters(recurse=False))
        if has_mask or has_orig or torch_prune.is_pruned(module) and not list(module.children()):
            found.append(name or type(module).__name__)
    return found
