"""Helpers every quantization handler shares: skip lists, calibration batches, quiet imports."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from torchslim.data import DataBundle, calibration_batches, signature_of
from torchslim.errors import ConfigError


@dataclass
class QuantizeRecord:
    """What a handler did besides returning the model, for the recipe step's notes and the
    report: typed fields on the caller's inputs, not attributes set on the returned module."""

    fallback: Any = None  # a FallbackResult when ``fallback: auto`` ran
    smoothquant: list[Any] | None = None  # the SmoothQuant groups, when it ran


@dataclass
class QuantizeInputs:
    """What a handler may use besides the model and its config, and where it records what it did."""

    example_inputs: tuple[torch.Tensor, ...]
    data: DataBundle | None
    device: torch.device
    seed: int = 0
    log: object = None
    record: QuantizeRecord = field(default_factory=QuantizeRecord)


@contextlib.contextmanager
def quiet_backends() -> Iterator[None]:
    """Keep torchao's import-time noise (missing CUDA/.so kernels it cannot use on this machine,
    pytree deprecation notes) and torch.ao deprecation warnings out of the user's terminal."""
    loggers = [logging.getLogger(n) for n in ("torchao", "torch.utils._pytree")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*sourceTensor.detach.*")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def import_torchao():
    with quiet_backends():
        import torchao.quantization  # noqa: F401
        import torchao.quantization.pt2e  # noqa: F401  (registers quantized_decomposed ops)
    import torchao

    return torchao


# --- skip lists -------------------------------------------------------------------------------


class SkipList:
    """Module names (a name also covers its submodules) or class names to leave in float."""

    def __init__(self, entries: tuple[str, ...], model: nn.Module) -> None:
        self.names = set()
        self.types: set[type] = set()
        modules = dict(model.named_modules())
        classes = {type(m).__name__: type(m) for m in modules.values()}
        unknown = []
        for entry in entries:
            if entry in modules and entry:
                self.names.add(entry)
            elif entry in classes:
                self.types.add(classes[entry])
            else:
                unknown.append(entry)
        # A class covers every instance and, like a name, everything inside it (a skipped
        # attention block keeps its projections in float too).
        self.names |= {name for name, m in modules.items() if name and isinstance(m, tuple(self.types))}
        if unknown:
            some = ", ".join(n for n in list(modules)[1:8])
            raise ConfigError(
                f"quantize skip: {', '.join(map(repr, unknown))} match no module name or class in "
                f"{type(model).__name__}. Give module names as printed by model.named_modules() "
                f"(e.g. {some}) or class names (e.g. {', '.join(sorted(classes)[:5])})."
            )

    def __bool__(self) -> bool:
        return bool(self.names or self.types)

    def skips(self, module: nn.Module, name: str) -> bool:
        if self.types and isinstance(module, tuple(self.types)):
            return True
        return any(name == n or name.startswith(n + ".") for n in self.names)


# --- example inputs and calibration -----------------------------------------------------------


def default_example_inputs(model: nn.Module, data: DataBundle | None) -> tuple[torch.Tensor, ...]:
    """A batch of 2 the model takes: from the data when given, else the zoo model's own."""
    if data is not None:
        return data.example_inputs(2, split="train")
    make = getattr(model, "example_inputs", None)
    if callable(make):
        return tuple(make(2))
    raise ConfigError(
        "quantize needs example inputs to trace the model: pass data=DataBundle (its train split) "
        "or example_inputs=(tensor, ...) shaped like one batch of the model's inputs."
    )


def calibration(inputs: QuantizeInputs, config) -> list[tuple[torch.Tensor, ...]]:
    """The config's calibration batches from the data's train split (``torchslim.data.calibration_batches``)."""
    return calibration_batches(inputs.data, signature_of(inputs.example_inputs), config.calibration_batches,
                               batch_size=config.batch_size, device=inputs.device, seed=inputs.seed,
                               how_to_pass="data=DataBundle (or --data on the command line)")


def float_size_bytes(model: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))
