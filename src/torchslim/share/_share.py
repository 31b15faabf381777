"""Weight sharing: every Linear/Conv/Embedding weight takes at most 2^bits distinct values.

Per layer, 1-D k-means (linear init, Deep Compression's choice) over the layer's nonzero
weights; zeros stay exactly zero, so a magnitude-pruned model stays sparse and the .tslim
encoder codes the zeros by position. Centroids are rounded to fp16 by default, so the
file stores two bytes per centroid and the decoded model is still bit-identical.

Optional fine-tuning trains the centroids only (the assignment is frozen), as in the paper:
each centroid's gradient is the sum of the gradients of the weights that share it.
"""

from __future__ import annotations

import copy
from typing import Literal

import torch
import torch.nn as nn
from pydantic import BaseModel, ConfigDict, Field

from torchslim.errors import ConfigError, UnsupportedError, validate_options
from torchslim.share._kmeans import kmeans_1d

_SHAREABLE = (nn.Linear, nn.modules.conv._ConvNd, nn.Embedding)


class ShareConfig(BaseModel):
    """Options of the ``share`` step (recipe: ``share: {bits: 5}``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    bits: int = Field(5, ge=1, le=8, description="2^bits shared values per layer (1-8)")
    include_bias: bool = Field(True, description="share biases too (each with its own codebook)")
    centroid_dtype: Literal["float32", "float16"] = Field(
        "float16", description="round centroids to fp16 so the file stores 2 bytes each (exactly)")
    iterations: int = Field(50, ge=1, le=1000, description="k-means iterations at most")
    finetune_epochs: int = Field(0, ge=0, le=1000, description="epochs of centroid fine-tuning (needs data)")
    lr: float = Field(1e-3, gt=0, le=1.0, description="fine-tuning learning rate")


def validate_config(options: dict | ShareConfig | None, where: str = "share options") -> ShareConfig:
    return validate_options(ShareConfig, options, where, example="{bits: 5}")


def shareable_tensors(model: nn.Module, include_bias: bool = True) -> list[tuple[str, nn.Module, str]]:
    """(qualified name, module, attribute) of every tensor sharing applies to."""
    found = []
    for mod_name, module in model.named_modules():
        if not isinstance(module, _SHAREABLE):
            continue
        for attr in ("weight", "bias") if include_bias else ("weight",):
            t = getattr(module, attr, None)
            if isinstance(t, torch.Tensor) and t.is_floating_point() and t.numel() > 0:
                found.append((f"{mod_name}.{attr}" if mod_name else attr, module, attr))
    return found


def _fold_pruning_masks(model: nn.Module) -> None:
    """Make torch.nn.utils.prune masks permanent: with a mask the weight is recomputed from
    ``weight_orig`` before every forward, which would silently undo the sharing."""
    import torch.nn.utils.prune as torch_prune

    for module in model.modules():
        for hook in list(module._forward_pre_hooks.values()):
            if isinstance(hook, torch_prune.BasePruningMethod):
                torch_prune.remove(module, hook._tensor_name)
                with torch.no_grad():
                    getattr(module, hook._tensor_name).add_(0.0)  # weight * mask leaves -0.0


def _shared_values(weight: torch.Tensor, config: ShareConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(centroids, index, nonzero mask) for one tensor; index is -1 where the weight is zero."""
    nonzero = weight != 0
    centroids, assignment = kmeans_1d(weight[nonzero], 2 ** config.bits, iterations=config.iterations)
    dtype = torch.float16 if config.centroid_dtype == "float16" else weight.dtype
    centroids = centroids.to(dtype).to(weight.dtype)
    index = torch.full(weight.shape, -1, dtype=torch.int64, device=weight.device)
    index[nonzero] = assignment
    return centroids, index, nonzero


def _materialize(centroids: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    dense = centroids[index.clamp(min=0)]
    return torch.where(index >= 0, dense, torch.zeros((), dtype=dense.dtype, device=dense.device))


def share(model: nn.Module, config: ShareConfig | dict | None = None, *, data=None, device: str | torch.device = "cpu") -> nn.Module:
    """A copy of ``model`` whose Linear/Conv/Embedding weights take at most 2^bits distinct
    nonzero values per tensor (zeros, e.g. from pruning, stay exactly zero)."""
    config = validate_config(config)
    if config.finetune_epochs and data is None:
        raise ConfigError("share: finetune_epochs > 0 needs data to fine-tune the centroids on; pass data=.")
    shared = copy.deepcopy(model).eval()
    _fold_pruning_masks(shared)
    targets = shareable_tensors(shared, config.include_bias)
    if not targets:
        raise UnsupportedError(f"share: {type(model).__name__} has no Linear, Conv or Embedding layer to share weights in.")
    books = {}
    with torch.no_grad():
        for name, module, attr in targets:
            weight = getattr(module, attr)
            if not bool((weight != 0).any()):  # all zeros (an attention bias at init): one value already
                continue
            centroids, index, _ = _shared_values(weight, config)
            weight.copy_(_materialize(centroids, index))
            books[name] = (module, attr, centroids, index)
    if config.finetune_epochs:
        _finetune_centroids(shared, books, data, config, device)
    return shared


def _finetune_centroids(model: nn.Module, books: dict, data, config: ShareConfig, device) -> None:
    """Train the centroids with the assignment frozen: the weight is recomputed from its
    codebook before every forward pass (a pre-hook, like torch.nn.utils.prune does)."""
    from torchslim.train import TrainConfig, fit

    handles = []
    order = {id(m): list(m._parameters) for m, _, _, _ in books.values()}  # restored afterwards
    for _name, (module, attr, centroids, index) in books.items():
        delattr(module, attr)
        module.register_parameter(f"{attr}_centroids", nn.Parameter(centroids.clone()))
        module.register_buffer(f"{attr}_index", index)

        def hook(mod, _inputs, attr=attr):
            setattr(mod, attr, _materialize(getattr(mod, f"{attr}_centroids"), getattr(mod, f"{attr}_index")))

        handles.append(module.register_forward_pre_hook(hook))
        hook(module, ())
    try:
        fit(model, data, TrainConfig(epochs=config.finetune_epochs, lr=config.lr), device=device)
    finally:
        for h in handles:
            h.remove()
        with torch.no_grad():
            for module, attr, _, _ in books.values():
                centroids = getattr(module, f"{attr}_centroids").detach()
                if config.centroid_dtype == "float16":
                    centroids = centroids.half().to(centroids.dtype)
                index = getattr(module, f"{attr}_index")
                delattr(module, f"{attr}_centroids")
                delattr(module, f"{attr}_index")
                if hasattr(module, attr):
                    delattr(module, attr)
                module.register_parameter(attr, nn.Parameter(_materialize(centroids, index)))
            for module, _, _, _ in books.values():
                module._parameters = {k: module._parameters[k] for k in order[id(module)]}
    model.eval()


def distinct_values(model: nn.Module, include_bias: bool = True) -> dict[str, int]:
    """Distinct nonzero values per shareable tensor (a check that sharing really happened)."""
    return {name: int(torch.unique(getattr(m, a)[getattr(m, a) != 0]).numel())
            for name, m, a in shareable_tensors(model, include_bias)}
