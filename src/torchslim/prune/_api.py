"""``prune(model, config)``: one verb, a handler per config type."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn

from torchslim.data import DataBundle
from torchslim.errors import ConfigError
from torchslim.prune._channel import prune_channels
from torchslim.prune._config import (
    ChannelPruneConfig,
    GlobalPruneConfig,
    MagnitudePruneConfig,
    parse_prune_config,
)
from torchslim.prune._layers import RunContext, example_batch
from torchslim.prune._magnitude import prune_unstructured
from torchslim.train import check_finetune_teacher

# Adding a method = a config class + a handler line here; prune() itself never changes.
_HANDLERS: dict[type, Callable[[nn.Module, Any, RunContext], nn.Module]] = {
    MagnitudePruneConfig: prune_unstructured,
    GlobalPruneConfig: prune_unstructured,
    ChannelPruneConfig: prune_channels,
}


def prune(
    model: nn.Module,
    config: MagnitudePruneConfig | GlobalPruneConfig | ChannelPruneConfig | dict | str,
    *,
    data: DataBundle | None = None,
    example_inputs: tuple[torch.Tensor, ...] | torch.Tensor | None = None,
    device: str | torch.device = "cpu",
    teacher: nn.Module | None = None,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> nn.Module:
    """A pruned copy of ``model`` (the input is never changed).

    ``config`` is a typed config (``ChannelPruneConfig(ratio=0.5)``) or its mapping
    (``{"method": "channel", "ratio": 0.5}``). ``data`` is needed for fine-tuning
    (``finetune_epochs > 0``), Taylor importance and BN recalibration; ``teacher`` turns
    that fine-tuning into knowledge distillation (of every layer's hidden states too with
    ``finetune_hidden_states``): iterative pruning with distillation between the rounds. ``example_inputs`` trace the model
    (default: a real batch of ``data``, or the zoo model's own example inputs).
    """
    config = parse_prune_config(config)
    if config.finetune_epochs > 0 and data is not None:
        check_finetune_teacher(data, teacher)  # before any pruning work, not after the first round
    if config.finetune_hidden_states and teacher is None:
        raise ConfigError("prune.finetune_hidden_states: the fine-tuning epochs match a teacher's layers; pass "
                          "teacher=<the unoptimized model> (the recipe's prune step does), or remove the option.")
    device = torch.device(device)
    pruned = copy.deepcopy(model).to(device).eval()
    if teacher is not None:
        teacher = teacher.to(device).eval()
    run = RunContext(
        data=data,
        device=device,
        teacher=teacher,
        example_inputs=example_batch(pruned, data, example_inputs, device),
        seed=seed,
        log=log or (lambda _msg: None),
    )
    return _HANDLERS[type(config)](pruned, config, run).eval()
