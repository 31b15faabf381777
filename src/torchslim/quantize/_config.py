"""One typed config per quantization method, a discriminated union keyed by ``method``.

These are the YAML-facing shapes of a recipe's ``quantize`` step (pydantic, ``extra="forbid"``)
and the configs the ``quantize`` verb takes::

    quantize(model, StaticInt8Config(calibration_batches=32, skip=["head"]), data=bundle)
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

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


class Calibration(BaseModel):
    """How many train batches a calibrated int8 observes; declared once, shared by every
    calibrated path (PT2E static and QAT here, ONNX Runtime static, NNCF and TensorRT int8 in
    ``torchslim.export``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    calibration_batches: int = Field(default=16, ge=1, le=10_000, description="train batches observed to set "
                                     "activation ranges")
    batch_size: int = Field(default=32, ge=1, le=4096, description="samples per calibration batch")


class Int8Tuning(BaseModel):
    """SmoothQuant and accuracy-aware fallback of a calibrated int8, declared once: the
    ``quantize`` step's static method, ONNX Runtime static and OpenVINO's NNCF int8 all take
    these fields with the same spelling, bounds and meaning."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    smoothquant: float | Literal["auto"] | None = Field(
        default=None,
        description="SmoothQuant before quantizing: migration strength alpha in [0, 1], 'auto' "
        "(per layer from a grid, by measured int8 output error on calibration data) or null (off; "
        "OpenVINO int8 then keeps NNCF's own default for token models).",
    )
    fallback: Literal["auto"] | None = Field(
        default=None,
        description="'auto': keep the layers that cost the most accuracy (measured on the validation "
        "split) in float, one at a time, until within fallback_target_drop; null: off.",
    )
    fallback_target_drop: float = Field(default=0.5, ge=0.0, le=100.0,
                                        description="accuracy/fidelity drop (points) fallback stops at")
    fallback_max_layers: int = Field(default=8, ge=1, le=1000, description="most layers fallback tries in float")

    @field_validator("smoothquant", mode="before")
    @classmethod
    def _alpha(cls, value: Any) -> Any:
        # one message for every spelling (YAML number, CLI string, Python float)
        if value is None or value == "auto":
            return value
        try:
            alpha = float(value)
        except (TypeError, ValueError):
            alpha = float("nan")
        if isinstance(value, bool) or not 0.0 <= alpha <= 1.0:
            raise ValueError(f"smoothquant {value!r}: use a migration strength alpha in [0, 1] (e.g. 0.5), "
                             "'auto' or null (off)")
        return alpha

    @property
    def tuned(self) -> bool:
        return self.smoothquant is not None or self.fallback is not None

    def tuning(self) -> Int8Tuning:
        """These options alone (what the int8 back ends take), whatever config carries them."""
        return Int8Tuning(**{name: getattr(self, name) for name in Int8Tuning.model_fields})

    def tuning_parts(self) -> list[str]:
        """``smoothquant=auto, fallback=auto[, fallback_target_drop=...]`` for a step's description."""
        parts = [f"{k}={getattr(self, k)}" for k in ("smoothquant", "fallback") if getattr(self, k) is not None]
        if self.fallback is not None:
            parts += [f"{k}={getattr(self, k)}" for k in ("fallback_target_drop", "fallback_max_layers")
                      if k in self.model_fields_set]
        return parts


class StaticInt8Config(Int8Tuning, Calibration, _Base):  # fields in _Base, Calibration, Int8Tuning order
    """Post-training static int8 (PT2E + ``X86InductorQuantizer``): per-channel int8 weights,
    per-tensor uint8 activations with ranges observed on ``calibration_batches`` train batches.
    Convolutions and linear layers; fast only when compiled with inductor freezing."""

    method: Literal["static"] = "static"


class QATConfig(Calibration, _Base):
    """Quantization-aware training (PT2E QAT): fake-quantize, fine-tune with ``torchslim.train.fit``,
    then convert to the same int8 graph as ``static`` (``calibration_batches`` observed before training)."""

    method: Literal["qat"] = "qat"
    epochs: int = Field(default=1, ge=1, le=1000)
    lr: float = Field(default=1e-4, gt=0, le=1.0)


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
