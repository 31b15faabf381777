"""Batch-norm helpers: insert, recalibrate, fold.

- ``insert_batchnorm(model, ["fc1", "conv2"])``: follow the named Conv/Linear layers with a
  fresh BatchNorm (the layer becomes ``Sequential(layer, bn)``; its weights keep their names
  under ``<name>.0``).
- ``recalibrate_batchnorm(model, data)``: after pruning or weight surgery the running
  mean/var describe activations that no longer exist; re-estimate them from data with a
  cumulative average (momentum=None), touching no weight. The one implementation: channel
  pruning calls it too (``torchslim.prune`` re-exports it).
- ``fold_batchnorm(model)``: for inference, fold each eval-mode BN into the Conv/Linear before
  it (W' = W * gamma / sigma, b' = (b - mu) * gamma / sigma + beta): one layer fewer per pair,
  same outputs up to float rounding.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch
import torch.nn as nn
from torch.utils.data import Dataset

from torchslim.errors import ConfigError, UnsupportedError

if TYPE_CHECKING:
    from torchslim.data import DataBundle

_BN = nn.modules.batchnorm._BatchNorm


def insert_batchnorm(model: nn.Module, names: list[str]) -> nn.Module:
    """Add a BatchNorm after each named Conv1d/2d/3d or Linear, in place; returns ``model``."""
    modules = dict(model.named_modules())
    for name in names:
        layer = modules.get(name)
        if layer is None:
            raise ConfigError(f"insert_batchnorm: {type(model).__name__} has no module named {name!r}. Names look like {', '.join(list(modules)[1:6])}.")
        if isinstance(layer, nn.Conv1d):
            bn: nn.Module = nn.BatchNorm1d(layer.out_channels)
        elif isinstance(layer, nn.Conv2d):
            bn = nn.BatchNorm2d(layer.out_channels)
        elif isinstance(layer, nn.Conv3d):
            bn = nn.BatchNorm3d(layer.out_channels)
        elif isinstance(layer, nn.Linear):
            bn = nn.BatchNorm1d(layer.out_features)  # expects (N, features) activations
        else:
            raise ConfigError(f"insert_batchnorm: {name!r} is a {type(layer).__name__}; only Conv1d/2d/3d and Linear layers take a BatchNorm after them.")
        param = next(layer.parameters())
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, nn.Sequential(layer, bn.to(param.device)))
    return model


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, data: Dataset | DataBundle, *, batches: int = 32, batch_size: int = 64,
                          device: str | torch.device = "cpu", seed: int = 0) -> int:
    """Re-estimate every BatchNorm's running statistics from ``batches`` shuffled batches of ``data``
    (a Dataset, or a DataBundle, whose train split is used: never val or test).

    Pruning and weight surgery shift each layer's activations, so the stored running mean/var no
    longer match and accuracy drops for no real reason. The statistics are reset and re-estimated
    in train mode with ``momentum=None`` (a cumulative average: every batch weighs the same),
    under no_grad so no weight moves; dropout is active meanwhile but only affects outputs we
    discard. The batches are drawn with ``seed``, so the result is reproducible.

    Returns the number of BN layers recalibrated, and leaves the model in eval mode. Nothing to do
    is not an error: with no BatchNorm tracking running statistics, or ``batches <= 0``, it
    returns 0 and the model is untouched (mode included). Channel pruning calls this after every
    round on any model, most of which have no BN; a caller that requires BN checks the count.
    """
    from torchslim.data import DataBundle, as_args, loader, to_device

    bns = [m for m in model.modules() if isinstance(m, _BN) and m.track_running_stats]
    if not bns or batches <= 0:
        return 0
    dataset = data.train if isinstance(data, DataBundle) else data
    saved_momentum = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average: every batch weighs the same
    model.train()
    try:
        for i, (x, _y) in enumerate(loader(dataset, batch_size, shuffle=True, device=device, seed=seed)):
            if i >= batches:
                break
            model(*as_args(to_device(x, device)))
    finally:
        for bn, momentum in zip(bns, saved_momentum, strict=True):
            bn.momentum = momentum
        model.eval()
    return len(bns)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (eval mode) with every BN that directly follows a Conv/Linear folded in.

    Uses torch.fx to find ``layer -> bn`` pairs where the BN is the layer's only user, so a
    residual branch or a BN fed by something else is left alone. Models fx cannot trace fall
    back to adjacent pairs inside ``nn.Sequential`` containers.
    """
    model = copy.deepcopy(model).eval()
    try:
        import torch.fx as fx

        traced = fx.symbolic_trace(model)
    except Exception:
        folded = _fold_sequential(model)
    else:
        folded = _fold_traced(traced)
        model = traced
    if folded == 0:
        raise UnsupportedError(f"fold_batchnorm: {type(model).__name__} has no BatchNorm directly after a Conv or Linear layer; nothing to fold.")
    return model


def _fuse(layer: nn.Module, bn: nn.Module) -> nn.Module | None:
    from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

    if not isinstance(bn, _BN) or not bn.track_running_stats:
        return None
    if isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and layer.out_channels == bn.num_features:
        return fuse_conv_bn_eval(layer, bn)
    if isinstance(layer, nn.Linear) and layer.out_features == bn.num_features:
        return fuse_linear_bn_eval(layer, bn)
    return None


def _fold_traced(gm) -> int:
    modules = dict(gm.named_modules())
    folded = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not isinstance(modules.get(node.target), _BN):
            continue
        producer = node.args[0] if node.args else None
        if getattr(producer, "op", None) != "call_module" or len(producer.users) != 1:
            continue
        fused = _fuse(modules[producer.target], modules[node.target])
        if fused is None:
            continue
        parent_name, _, child = producer.target.rpartition(".")
        setattr(gm.get_submodule(parent_name) if parent_name else gm, child, fused)
        modules[producer.target] = fused
        node.replace_all_uses_with(producer)
        gm.graph.erase_node(node)
        folded += 1
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return folded


def _fold_sequential(model: nn.Module) -> int:
    folded = 0
    for container in list(model.modules()):
        if not isinstance(container, nn.Sequential):
            continue
        keys = list(container._modules)
        for a, b in zip(keys, keys[1:], strict=False):
            fused = _fuse(container._modules[a], container._modules[b])
            if fused is not None:
                container._modules[a] = fused
                container._modules[b] = nn.Identity()
                folded += 1
    return folded
