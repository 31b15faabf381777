"""Pruning: ``prune(model, config)`` returns a smaller copy of the model.

    from torchslim.prune import prune, ChannelPruneConfig
    small = prune(model, ChannelPruneConfig(ratio=0.5, iterations=3, finetune_epochs=2), data=data)

Methods (the ``method`` key of the config):
    magnitude  L1 unstructured, per layer         -> zeros in dense tensors (no speed-up;
    global     L1 unstructured, ranked globally      save as .tslim (share.save_tslim) to shrink)
    channel    structured, Torch-Pruning          -> fewer channels: params, MACs, size, latency drop

Every result is permanent: no masks, no ``weight_orig``, no hooks. ``sensitivity`` measures
each layer's accuracy drop under pruning or int8 and yields per-layer ratios and skip lists.
"""

from __future__ import annotations

from torchslim.core.registry import TECHNIQUES, Technique
from torchslim.prune._api import prune
from torchslim.prune._channel import channel_counts
from torchslim.prune._config import (
    PRUNE_METHODS,
    ChannelPruneConfig,
    GlobalPruneConfig,
    MagnitudePruneConfig,
    PruneConfig,
    parse_prune_config,
)
from torchslim.prune._layers import prunable_layers, zero_fraction
from torchslim.prune._magnitude import leftover_masks
from torchslim.prune._sensitivity import (
    SensitivityResult,
    SensitivityRow,
    ratios_from_sensitivity,
    sensitivity,
    skip_list_from_sensitivity,
)
from torchslim.prune._step import UNSTRUCTURED_NOTE, run_step, validate_step
from torchslim.prune._student import widen_student
from torchslim.train.batchnorm import recalibrate_batchnorm  # the one implementation, re-exported

__all__ = [
    "widen_student",
    "PRUNE_METHODS",
    "UNSTRUCTURED_NOTE",
    "ChannelPruneConfig",
    "GlobalPruneConfig",
    "MagnitudePruneConfig",
    "PruneConfig",
    "SensitivityResult",
    "SensitivityRow",
    "channel_counts",
    "leftover_masks",
    "parse_prune_config",
    "prunable_layers",
    "prune",
    "ratios_from_sensitivity",
    "recalibrate_batchnorm",
    "run_step",
    "sensitivity",
    "skip_list_from_sensitivity",
    "validate_step",
    "zero_fraction",
]

TECHNIQUES.register("prune", Technique("prune", validate_step, run_step, "magnitude, global and structured channel pruning"))
