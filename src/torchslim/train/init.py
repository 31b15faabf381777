"""Weight initialization by name, applied with ``model.apply``.

    init_weights(model, "kaiming_normal")

Conv and Linear weights get the scheme; their biases are zeroed. Normalization layers
(BatchNorm, LayerNorm, GroupNorm) get weight 1 and bias 0, so they start as the identity.
Kaiming assumes ReLU (the zoo's activation); xavier suits tanh/linear layers.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn

from torchslim.errors import ConfigError

_WEIGHT_INIT: dict[str, Callable] = {
    "xavier_uniform": nn.init.xavier_uniform_,
    "xavier_normal": nn.init.xavier_normal_,
    "kaiming_uniform": lambda w: nn.init.kaiming_uniform_(w, nonlinearity="relu"),
    "kaiming_normal": lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"),
    "orthogonal": nn.init.orthogonal_,
}
_WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def init_schemes() -> list[str]:
    return sorted(_WEIGHT_INIT)


def init_weights(model: nn.Module, scheme: str) -> int:
    """Re-initialize ``model`` in place with ``scheme``; returns how many modules were set.

    Raises ``ConfigError`` for an unknown scheme and when the model has no layer the scheme
    applies to (a scheme that silently does nothing would be a bug).
    """
    if scheme not in _WEIGHT_INIT:
        raise ConfigError(f"Unknown weight init {scheme!r}. Choose one of: {', '.join(init_schemes())}.")
    weight_init = _WEIGHT_INIT[scheme]
    count = 0

    def apply_one(module: nn.Module) -> None:
        nonlocal count
        if isinstance(module, _WEIGHTED):
            weight_init(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
            count += 1
        elif isinstance(module, _NORMS):
            if getattr(module, "weight", None) is not None:
                nn.init.ones_(module.weight)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
            count += 1

    model.apply(apply_one)
    if count == 0:
        raise ConfigError(f"init {scheme!r}: {type(model).__name__} has no Conv, Linear or normalization layer to initialize.")
    return count
