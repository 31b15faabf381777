"""Helpers every pruning method shares: which layers, which is the classifier, how sparse.
BN recalibration is ``torchslim.train.batchnorm.recalibrate_batchnorm``."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn as nn

from torchslim.data import DataBundle, as_args
from torchslim.errors import ConfigError


@dataclass
class RunContext:
    """What a pruning method needs besides the model and its config."""

    data: DataBundle | None
    device: torch.device
    teacher: nn.Module | None
    example_inputs: tuple
    seed: int = 0
    log: Callable[[str], None] = lambda _msg: None


_LAYER_CLASSES: dict[str, tuple[type[nn.Module], ...]] = {
    "linear": (nn.Linear,),
    "conv": (nn.Conv1d, nn.Conv2d, nn.Conv3d),
}


def prunable_layers(model: nn.Module, layer_types: Iterable[str] = ("linear", "conv")) -> dict[str, nn.Module]:
    """Name -> module for every Linear/Conv of the chosen ``layer_types``."""
    classes = tuple(c for t in layer_types for c in _LAYER_CLASSES[t])
    return {name: m for name, m in model.named_modules() if isinstance(m, classes)}


def prunable_weights(model: nn.Module, layer_types: Iterable[str] = ("linear", "conv")) -> dict[str, tuple[nn.Module, tuple[str, ...]]]:
    """Name -> (module, weight attribute names) of every weight unstructured pruning can zero:
    each Linear/Conv's ``weight``, and with ``linear`` the projection weights that
    ``nn.MultiheadAttention`` holds itself and reads directly (``in_proj_weight``, or
    ``q/k/v_proj_weight`` when keys and values have their own widths); its ``out_proj`` is an
    ordinary Linear under its own name."""
    found = {name: (m, ("weight",)) for name, m in prunable_layers(model, layer_types).items()}
    if "linear" in layer_types:
        for name, m in model.named_modules():
            if isinstance(m, nn.MultiheadAttention):
                found[name] = (m, ("in_proj_weight",) if m._qkv_same_embed_dim else ("q_proj_weight", "k_proj_weight", "v_proj_weight"))
    return found


def check_module_names(model: nn.Module, names: Iterable[str], option: str, allowed: dict[str, nn.Module] | None = None) -> None:
    """Fail loudly on names the model does not have, or (with ``allowed``) cannot prune."""
    modules = dict(model.named_modules())
    missing = [n for n in names if n not in modules]
    if missing:
        sample = ", ".join(list(n for n in modules if n)[:12])
        raise ConfigError(
            f"{option}: the model has no module named {', '.join(map(repr, missing))}. "
            f"Module names look like: {sample}, ..."
        )
    if allowed is not None:
        bad = [n for n in names if n not in allowed]
        if bad:
            kinds = ", ".join(f"{n!r} ({type(modules[n]).__name__})" for n in bad)
            raise ConfigError(
                f"{option}: {kinds} cannot be pruned by this method "
                f"(prunable here: {', '.join(list(allowed)[:12])}{', ...' if len(allowed) > 12 else ''})."
            )


def example_batch(model: nn.Module, data: DataBundle | None, example_inputs: tuple | None, device) -> tuple:
    """Inputs to trace the model with: given ones, a real batch, or the zoo model's own."""
    if example_inputs is not None:
        return tuple(t.to(device) for t in as_args(example_inputs))
    if data is not None:
        return tuple(t.to(device) for t in data.example_inputs(2, split="train"))
    if hasattr(model, "example_inputs"):
        return tuple(t.to(device) for t in model.example_inputs(2))
    raise ConfigError("Pruning needs example inputs to trace the model: pass example_inputs=(tensor, ...) or data=.")


def output_layer_names(model: nn.Module, example_inputs: tuple) -> list[str]:
    """The Linear/Conv layers whose output is the model's output (the classifier): pruning
    their output channels would change the number of classes, so they are always kept."""
    layers = prunable_layers(model)
    order: list[tuple[str, torch.Tensor]] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out, n=n: order.append((n, out))) for n, m in layers.items()]
    try:
        with torch.no_grad():
            out = model(*example_inputs)
    finally:
        for h in hooks:
            h.remove()
    if isinstance(out, (tuple, list)):
        out = out[0]
    width = out.shape[-1] if isinstance(out, torch.Tensor) and out.dim() else None
    for name, layer_out in reversed(order):
        dim = -1 if isinstance(layers[name], nn.Linear) else 1
        if isinstance(layer_out, torch.Tensor) and layer_out.dim() and layer_out.shape[dim] == width:
            return [name]
    return [order[-1][0]] if order else []


def zero_fraction(model: nn.Module, names: Iterable[str] | None = None) -> float:
    """Measured fraction of exactly-zero weights over ``names`` (default: every weight of
    ``prunable_weights``: all Linear/Conv, and MultiheadAttention's own projections)."""
    weights = prunable_weights(model)
    chosen = [getattr(m, a) for n in (names if names is not None else weights) for m, attrs in [weights[n]] for a in attrs]
    total = sum(w.numel() for w in chosen)
    zeros = sum(int((w == 0).sum()) for w in chosen)
    return zeros / total if total else 0.0
