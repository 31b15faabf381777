"""``quantize(model, config)``: the verb, and the table of handlers keyed by config type.

Adding a method means adding a config class (``_config.py``) and one row here; the verb never
changes. Handlers take a private deep copy of the model, so the caller's model is untouched.
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable

import torch
import torch.nn as nn

from torchslim.data import DataBundle, as_args, check_signature, signature_of
from torchslim.errors import ConfigError
from torchslim.quantize._common import QuantizeInputs, default_example_inputs
from torchslim.quantize._config import (
    CastConfig,
    DynamicInt8Config,
    Int4WeightOnlyConfig,
    QATConfig,
    StaticInt8Config,
    WeightOnlyInt8Config,
    parse_config,
)

# config type -> "module:function"; imported on use so torchao loads only when needed.
_HANDLERS: dict[type, str] = {
    DynamicInt8Config: "torchslim.quantize._torchao:quantize_dynamic",
    WeightOnlyInt8Config: "torchslim.quantize._torchao:quantize_weight_only",
    Int4WeightOnlyConfig: "torchslim.quantize._torchao:quantize_int4",
    StaticInt8Config: "torchslim.quantize._pt2e:quantize_static",
    QATConfig: "torchslim.quantize._pt2e:quantize_qat",
    CastConfig: "torchslim.quantize._cast:quantize_cast",
}


def _handler(config) -> Callable:
    target = _HANDLERS.get(type(config))
    if target is None:
        raise ConfigError(f"No quantization handler for {type(config).__name__}.")
    module_name, _, function = target.partition(":")
    return getattr(importlib.import_module(module_name), function)


def quantize(
    model: nn.Module,
    config,
    *,
    data: DataBundle | None = None,
    example_inputs: tuple[torch.Tensor, ...] | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> nn.Module:
    """A quantized copy of ``model`` (``model`` itself is never modified).

    ``config`` is a config object (``StaticInt8Config(...)``), a dict (``{"method": "static"}``)
    or a method name. ``data``'s train split calibrates (``static``) or fine-tunes (``qat``);
    ``example_inputs`` (a batch of the model's positional inputs) defaults to the data's.
    The result takes the same inputs as ``model`` and saves with
    ``torchslim.artifacts.save_exported`` to a file holding the low-precision weights.
    """
    return apply(model, parse_config(config), quantize_inputs(model, data, example_inputs, device, seed, log))


def quantize_inputs(model: nn.Module, data: DataBundle | None, example_inputs: tuple[torch.Tensor, ...] | None,
                    device: str | torch.device, seed: int, log: Callable[[str], None] | None) -> QuantizeInputs:
    """The handlers' inputs, checked: the example batch on ``device`` and shaped like the data's."""
    device = torch.device(device)
    if example_inputs is None:
        example_inputs = default_example_inputs(model, data)
    example = tuple(t.to(device) for t in as_args(example_inputs))
    if data is not None and example_inputs is not None:
        check_signature(data.example_inputs(2, split="train"), signature_of(example), f"A batch of data {data.spec!r}")
    return QuantizeInputs(example_inputs=example, data=data, device=device, seed=seed, log=log)


def apply(model: nn.Module, config, inputs: QuantizeInputs) -> nn.Module:
    """The handler for ``config`` on a private copy of ``model``; what it did besides the
    returned model (fallback, SmoothQuant) is in ``inputs.record``."""
    work = copy.deepcopy(model).to(inputs.device).eval()
    quantized = _handler(config)(work, config, inputs)
    if getattr(work, "torchslim_split_attention", None):  # PT2E returns a new graph module
        quantized.torchslim_split_attention = work.torchslim_split_attention
    quantized.torchslim_quantization = config.describe()
    return quantized
