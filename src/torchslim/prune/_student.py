"""``widen_student``: a narrower, freshly initialized copy of a model, the student that
``torchslim.distill`` teaches (built with the channel-pruning dependency graph)."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn as nn

from torchslim.errors import ConfigError
from torchslim.prune._channel import shrink_to_width
from torchslim.prune._layers import example_batch
from torchslim.zoo import create_model


def widen_student(
    teacher: nn.Module | Callable[[], nn.Module] | str,
    width_multiplier: float,
    *,
    example_inputs: tuple[torch.Tensor, ...] | None = None,
    seed: int = 0,
) -> nn.Module:
    """A freshly initialized student: the teacher's architecture with every prunable width
    (channels, hidden units, attention heads) scaled by ``width_multiplier`` in (0, 1].

    ``teacher`` is a model (copied, never changed), a factory returning one, or a zoo name.
    The narrowing is done by Torch-Pruning's dependency graph (coupled layers stay
    consistent, the classifier's outputs are kept), then every weight is re-initialized:
    the student learns from scratch, from the teacher, by ``distill``.
    """
    if not 0.0 < width_multiplier <= 1.0:
        raise ConfigError(
            f"width_multiplier must be in (0, 1] (a fraction of the teacher's widths), got {width_multiplier}. "
            "For a wider student, build it from its factory with larger widths."
        )
    if isinstance(teacher, str):
        model = create_model(teacher)
    elif isinstance(teacher, nn.Module):
        model = copy.deepcopy(teacher)
    elif callable(teacher):
        model = teacher()
        if not isinstance(model, nn.Module):
            raise ConfigError(f"widen_student: the factory returned {type(model).__name__}, not an nn.Module.")
    else:
        raise ConfigError(f"widen_student: give a model, a factory or a zoo name, not {type(teacher).__name__}.")
    model = model.cpu().eval()
    shrink_to_width(model, width_multiplier, example_batch(model, None, example_inputs, "cpu"))
    torch.manual_seed(seed)
    _reinitialize(model)
    return model


@torch.no_grad()
def _reinitialize(model: nn.Module) -> None:
    for module in model.modules():
        if hasattr(module, "reset_parameters") and callable(module.reset_parameters):
            module.reset_parameters()
        else:
            # Parameters held directly (a position embedding): small random values.
            for p in module.parameters(recurse=False):
                nn.init.trunc_normal_(p, std=0.02)
