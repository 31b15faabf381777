"""One typed config per quantization method, a discriminated union keyed by ``method``.

These are the YAML-facing shapes of a recipe's ``quantize`` step (pydantic, ``extra="forbid"``)
and the configs the ``quantize`` verb takes::

    quantize(model, StaticInt8Config(calibration_batches=32, skip=["head"]), data=bundle)
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from torchslim.errors import ConfigError, config_error_from_pydantic


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    skip: tuple[str, ...] = Field(
        default=(),
        description="Layers left in float: module names ('layers.0.ffn.0', a prefix keeps the "
        "whole subtree) or class names ('LayerNorm', 'Conv2d'). Names that match nothing are an error.",
    )

    def describe(self) -> str:
        """``quantize(method=static, calibration_batches=16)``: non-default fields only."""
        fields = {"method": self.method, **self.model_dump(exclude_defaults=True, exclude={"method"})}
        parts = [f"{k}={','.join(v) if isinstance(v, tuple) else v}" for k, v in fields.items()]
        return f"quantize({', '.join(parts)})"


class DynamicInt8Config(_Base):
    """int8 weights per output channel, activations quantized per token at run time
    (torchao ``Int8DynamicActivationInt8WeightConfig``). Linear layers only; no calibration."""

    method: Literal["dynamic"] = "dynamic"


class StaticInt8Config(_Base):
    """Post-training static int8 (PT2E + ``X86InductorQuantizer``): per-channel int8 weights,
    per-tensor uint8 activations with ranges observed on ``calibration_batches`` train batches.
    Convolutions and linear layers; fast only when compiled with inductor freezing."""

    method: Literal["static"] = "static"
    calibration_batches: int = Field(default=16, ge=1, le=10_000, description="train batches observed")
    batch_size: int = Field(default=32, ge=1, le=4096, description="calibration batch size")
    smoothquant: Annotated[float, Field(ge=0.0, le=1.0)] | Literal["auto"] | None = Field(
        default=None,
        description="SmoothQuant before quantizing: migration strength alpha in [0, 1], 'auto' "
        "(per layer from a grid, by measured int8 output error on calibration data) or null (off).",
    )
    fallback: Literal["auto"] | None = Field(
        default=None,
        description="'auto': keep the layers that cost the most accuracy (measured on the validation "
        "split) in float, one at a time, until within fallback_target_drop; null: off.",
    )
    fallback_target_drop: float = Field(default=0.5, ge=0.0, le=100.0,
                                        description="accuracy/fidelity drop (points) fallback stops at")
    fallback_max_layers: int = Field(default=8, ge=1, le=1000, description="most layers fallback tries in float")


class QATConfig(_Base):
    """Quantization-aware training (PT2E QAT): fake-quantize, fine-tune with ``torchslim.train.fit``,
    then convert to the same int8 graph as ``static``."""

    method: Literal["qat"] = "qat"
    epochs: int = Field(default=1, ge=1, le=1000)
    lr: float = Field(default=1e-4, gt=0, le=1.0)
    calibration_batches: int = Field(default=16, ge=1, le=10_000, description="batches observed before training")
    batch_size: int = Field(default=32, ge=1, le=4096)


class WeightOnlyInt8Config(_Base):
    """int8 weights per output channel, float activations (torchao ``Int8WeightOnlyConfig``)."""

    method: Literal["weight-only"] = "weight-only"


class Int4WeightOnlyConfig(_Base):
    """int4 weights in groups along the input dimension (torchao ``Int4WeightOnlyConfig``).
    Needs a backend kernel for the device: CUDA (tinygemm); torchao has none for CPU."""

    method: Literal["int4"] = "int4"
    group_size: Literal[32, 64, 128, 256] = 128


class CastConfig(_Base):
    """A cast of floating-point weights and activations to bfloat16 or float16; integer inputs
    (token ids, masks) are left alone and outputs are returned as float32."""

    method: Literal["bf16", "fp16"] = "bf16"


QuantizeConfig = Annotated[
    DynamicInt8Config | StaticInt8Config | QATConfig | WeightOnlyInt8Config | Int4WeightOnlyConfig | CastConfig,
    Field(discriminator="method"),
]
METHODS = ("dynamic", "static", "qat", "weight-only", "int4", "bf16", "fp16")
_ADAPTER: TypeAdapter = TypeAdapter(QuantizeConfig)


def parse_config(options: Any, where: str = "quantize step") -> QuantizeConfig:
    """A config from a recipe's options: a dict, a method name (``"static"``) or a config."""
    if isinstance(options, _Base):
        return options
    if options is None:
        options = {"method": "dynamic"}
    if isinstance(options, str):
        options = {"method": options}
    if not isinstance(options, dict):
        raise ConfigError(f"Invalid {where}: expected a mapping like {{method: static}}, got {type(options).__name__}.")
    if "method" not in options:
        raise ConfigError(f"Invalid {where}: method is required; one of {', '.join(METHODS)}.")
    if options["method"] not in METHODS:
        raise ConfigError(f"Invalid {where}: method {options['method']!r} is unknown; one of {', '.join(METHODS)}.")
    options = dict(options)
    if isinstance(options.get("skip"), str):
        options["skip"] = [s.strip() for s in options["skip"].split(",") if s.strip()]
    try:
        return _ADAPTER.validate_python(options)
    except ValidationError as e:
        raise config_error_from_pydantic(e, where) from None
