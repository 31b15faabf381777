"""bf16 / fp16 casts as a "quantization": half the bytes, and on CPUs with AMX (bf16) much
faster once compiled. The wrapper keeps the original interface: float inputs are cast in,
integer inputs (token ids, masks) pass untouched, floating outputs come back as float32."""

from __future__ import annotations

import torch
import torch.nn as nn

from torchslim.quantize._common import QuantizeInputs, SkipList
from torchslim.quantize._config import CastConfig

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _cast_floats(value, dtype: torch.dtype):
    if isinstance(value, torch.Tensor):
        return value.to(dtype) if value.is_floating_point() else value
    if isinstance(value, (tuple, list)):
        return type(value)(_cast_floats(v, dtype) for v in value)
    if isinstance(value, dict):
        return {k: _cast_floats(v, dtype) for k, v in value.items()}
    return value


def cast_interface(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Make ``model`` (already in ``dtype``) take and return float32, via hooks on the module
    itself rather than a wrapper: a wrapper's ``*args`` signature would hide the model's real
    inputs from ``torch.export``, and hooks keep module names (and skip lists) unchanged."""
    model.register_forward_pre_hook(lambda _m, args: _cast_floats(args, dtype))
    model.register_forward_hook(lambda _m, _args, out: _cast_floats(out, torch.float32))
    return model


def _keep_float32(module: nn.Module, dtype: torch.dtype) -> None:
    """A skipped layer computes in float32 between neighbours running in ``dtype``."""
    module.float()
    module.register_forward_pre_hook(lambda _m, args: _cast_floats(args, torch.float32))
    module.register_forward_hook(lambda _m, _args, out: _cast_floats(out, dtype))


def quantize_cast(model: nn.Module, config: CastConfig, inputs: QuantizeInputs) -> nn.Module:
    dtype = _DTYPES[config.method]
    skip = SkipList(config.skip, model)
    chosen = [name for name, m in model.named_modules() if name and skip.skips(m, name)]
    # Outermost skipped modules only: a skipped block already keeps its children in float32.
    outermost = [n for n in chosen if not any(n.startswith(p + ".") for p in chosen if p != n)]
    model = model.to(inputs.device).to(dtype)
    for name in outermost:
        _keep_float32(model.get_submodule(name), dtype)
    return cast_interface(model, dtype).eval()
