"""The one place torchslim uses ``torch.ao.quantization`` (deprecated since torch 2.13; it warns
on every call). It is used only where it is the one working path: dynamic int8 of recurrent
layers (``nn.LSTM``/``nn.GRU``), which torchao does not quantize. Its warnings stay here.
"""

from __future__ import annotations

import warnings

import torch.nn as nn

RNN_TYPES = (nn.LSTM, nn.GRU)


def has_recurrent_layers(model: nn.Module, skips) -> bool:
    return any(isinstance(m, RNN_TYPES) and not skips(m, n) for n, m in model.named_modules())


def quantize_recurrent_dynamic(model: nn.Module, skips) -> nn.Module:
    """int8 weights (fbgemm packed) for every LSTM/GRU not skipped; in place, returns ``model``.

    The packed weights are TorchScript objects that ``torch.export`` cannot save, so such a
    model runs eagerly in this process only (``save`` raises ``ExportError`` saying so).
    """
    names = {n for n, m in model.named_modules() if isinstance(m, RNN_TYPES) and not skips(m, n)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

        return quantize_dynamic(model, {name: default_dynamic_qconfig for name in names}, inplace=True)
