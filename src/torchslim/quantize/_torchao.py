"""torchao tensor-subclass quantization of Linear layers: dynamic int8, weight-only int8, int4.

The weights become torchao tensor subclasses holding int8 (or packed int4) data plus scales;
``torch.export`` traces through them, so the artifact stores the int8 data, not float copies.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from torchslim.errors import ConfigError, UnsupportedError
from torchslim.quantize._common import QuantizeInputs, SkipList, import_torchao, quiet_backends
from torchslim.quantize._config import DynamicInt8Config, Int4WeightOnlyConfig, WeightOnlyInt8Config


def _apply(model: nn.Module, ao_config, config, *, device: torch.device, allow_none: bool = False) -> nn.Module:
    from torchao.quantization import quantize_

    from torchslim.quantize._attention import read_directly, split_attention_

    skip = SkipList(config.skip, model)
    # MultiheadAttention's projections become plain Linears (same math) so they are quantized
    # and export; one the skip list keeps whole stays float, its out_proj included.
    split = split_attention_(model, skip.skips)
    if split:
        model.torchslim_split_attention = split
    kept_whole = read_directly(model)
    chosen = [name for name, m in model.named_modules()
              if isinstance(m, nn.Linear) and not skip.skips(m, name) and name not in kept_whole]
    if not chosen and allow_none:
        return model.eval()
    if not chosen:
        raise ConfigError(
            f"quantize method {config.method!r} quantizes nn.Linear layers, and {type(model).__name__} has "
            f"none{' left after the skip list' if skip else ''}. Use method 'static' (convolutions too) or 'bf16'."
        )
    names = set(chosen)
    with quiet_backends():
        quantize_(model.to(device), ao_config, filter_fn=lambda m, fqn: fqn in names)
    return model.eval()


def quantize_dynamic(model: nn.Module, config: DynamicInt8Config, inputs: QuantizeInputs) -> nn.Module:
    import_torchao()
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, PerRow

    # Per-row (per output channel) weight scales: per-tensor loses badly on transformers
    # (cosine 0.89 vs 0.975+ measured on MiniLM).
    ao_config = Int8DynamicActivationInt8WeightConfig(granularity=PerRow())
    from torchslim.quantize import _legacy

    skip = SkipList(config.skip, model)
    recurrent = _legacy.has_recurrent_layers(model, skip.skips)
    model = _apply(model, ao_config, config, device=inputs.device, allow_none=recurrent)
    if recurrent:  # torchao has no LSTM/GRU path; torch.ao's is the only one
        model = _legacy.quantize_recurrent_dynamic(model, skip.skips)
        if callable(inputs.log):
            inputs.log("note: LSTM/GRU layers were quantized with torch.ao (the only dynamic int8 path for "
                       "them); their packed weights run eagerly but cannot be saved with torch.export.")
    return model


def quantize_weight_only(model: nn.Module, config: WeightOnlyInt8Config, inputs: QuantizeInputs) -> nn.Module:
    import_torchao()
    from torchao.quantization import Int8WeightOnlyConfig

    return _apply(model, Int8WeightOnlyConfig(), config, device=inputs.device)


def quantize_int4(model: nn.Module, config: Int4WeightOnlyConfig, inputs: QuantizeInputs) -> nn.Module:
    if inputs.device.type != "cuda":
        raise UnsupportedError(
            f"int4 weight-only quantization has no kernel for {inputs.device.type.upper()} in the installed "
            f"torchao ({_torchao_version()}): its int4 layouts run on CUDA (tinygemm) only, and torchslim "
            "will not fall back to a slower path silently. Use method 'weight-only' (int8) or 'dynamic' "
            "on CPU, or quantize on a CUDA device (--device cuda)."
        )
    import_torchao()
    from torchao.quantization import Int4WeightOnlyConfig as AOInt4Config

    # tinygemm's int4 kernel multiplies bfloat16 activations; the model is cast to match.
    ao_config = AOInt4Config(group_size=config.group_size, int4_packing_format="tile_packed_to_4d")
    from torchslim.quantize._cast import cast_interface

    quantized = _apply(model.to(torch.bfloat16), ao_config, config, device=inputs.device)
    return cast_interface(quantized, torch.bfloat16)


def _torchao_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:  # the metadata, not an import: importing torchao prints kernel-loading noise
        return f"torchao {version('torchao')}"
    except PackageNotFoundError:
        return "torchao (not installed)"
