"""Quantization: one verb, one typed config per method.

    from torchslim.quantize import quantize, StaticInt8Config
    int8 = quantize(model, StaticInt8Config(calibration_batches=16), data=bundle)

Methods (``method`` field): ``dynamic`` (torchao int8 dynamic activations + per-channel int8
weights, Linear layers), ``static`` (PT2E post-training int8 with calibration, x86 CPU),
``qat`` (PT2E quantization-aware training), ``weight-only`` (int8 weights), ``int4`` (int4
weights; CUDA only), ``bf16`` / ``fp16`` (casts). See docs/quantization.md.
"""

from __future__ import annotations

from torchslim.core.registry import TECHNIQUES, Technique
from torchslim.quantize._api import quantize
from torchslim.quantize._config import (
    METHODS,
    Calibration,
    CastConfig,
    DynamicInt8Config,
    Int4WeightOnlyConfig,
    Int8Tuning,
    QATConfig,
    QuantizeConfig,
    StaticInt8Config,
    WeightOnlyInt8Config,
    parse_config,
)
from torchslim.quantize._fallback import FallbackResult, FallbackStep, measured_fallback
from torchslim.quantize._ops import register_ops_for
from torchslim.quantize._smooth import smooth_
from torchslim.quantize._step import fast_runtime, run_step, validate_step

__all__ = [
    "METHODS",
    "Calibration",
    "CastConfig",
    "DynamicInt8Config",
    "Int4WeightOnlyConfig",
    "Int8Tuning",
    "QATConfig",
    "QuantizeConfig",
    "StaticInt8Config",
    "WeightOnlyInt8Config",
    "fast_runtime",
    "parse_config",
    "quantize",
    "run_step",
    "validate_step",
    "FallbackResult",
    "FallbackStep",
    "measured_fallback",
    "smooth_",
    "register_ops_for",
]

TECHNIQUES.register("quantize", Technique("quantize", validate_step, run_step, "quantization: dynamic/static int8, QAT, weight-only, casts"))
