"""Built-in models: ``create_model(name)``, ``list_models(pattern)``.

The registry is an explicit table (not filled by import side effects): adding a model
family means adding a file and one line here. Every model takes an image batch shaped
``(N, C, H, W)`` (default ``(N, 1, 8, 8)``, the digits data) and returns class logits;
``model.example_inputs(batch_size)`` gives inputs of the right shape.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass

import torch.nn as nn

from torchslim.errors import SpecError
from torchslim.zoo.cnn import DigitsCNN
from torchslim.zoo.mlp import MLP
from torchslim.zoo.resnet import ResNetMini
from torchslim.zoo.transformer import TinyTransformer


@dataclass(frozen=True)
class ZooEntry:
    name: str
    factory: Callable[..., nn.Module]
    description: str
    min_test_accuracy: float  # the floor it must reach on digits' held-out split
    epochs: int  # training epochs the built-in trainer uses on digits


_REGISTRY: dict[str, ZooEntry] = {
    e.name: e
    for e in [
        ZooEntry("digits-cnn", DigitsCNN, "3-layer CNN with batch norm (the default)", 0.985, 30),
        ZooEntry("digits-mlp", lambda **kw: MLP(hidden=(256, 128), **kw), "MLP 64-256-128-10", 0.96, 40),
        ZooEntry("lenet-300-100", lambda **kw: MLP(hidden=(300, 100), **kw), "LeNet-300-100 MLP", 0.96, 40),
        ZooEntry("resnet-mini", ResNetMini, "residual CNN, 3 stages of basic blocks with BN", 0.96, 30),
        ZooEntry("tiny-transformer", TinyTransformer, "2-layer encoder over image rows as tokens", 0.94, 60),
    ]
}


def list_models(pattern: str = "*") -> list[str]:
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def get_entry(name: str) -> ZooEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise SpecError(
            f"Unknown zoo model {name!r}. Built-in models: {', '.join(list_models())}; "
            "or give 'path/to/file.py:factory', 'package.module:factory' or 'hf:DIR'."
        ) from None


def create_model(name: str, *, num_classes: int = 10, input_shape: tuple[int, ...] = (1, 8, 8)) -> nn.Module:
    """A fresh, untrained zoo model for inputs of ``input_shape`` (C, H, W)."""
    return get_entry(name).factory(num_classes=num_classes, input_shape=tuple(input_shape))


__all__ = ["ZooEntry", "create_model", "get_entry", "list_models"]
