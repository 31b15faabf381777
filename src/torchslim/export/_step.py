"""The ``export`` recipe step: ``{export: {format: onnx, quantize: static, calibration_batches: 16}}``.

The step writes the candidate's final artifact into the candidate's work dir and names the
runtime it must be measured on; the model itself passes through unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import torch.nn as nn
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from torchslim.errors import ConfigError, config_error_from_pydantic

if TYPE_CHECKING:  # the pipeline imports techniques, not the other way round
    from torchslim.pipeline.context import StepContext, StepOutput

# format -> (quantize methods it takes, precisions it takes)
_ALLOWED = {
    "onnx": ({"none", "dynamic", "static"}, {"fp32", "int8"}),
    "pt2": ({"none"}, {"fp32"}),
    "tensorrt": ({"none", "static"}, {"fp32", "fp16", "int8"}),
    "openvino": ({"none", "static"}, {"fp32", "bf16", "int8"}),  # static = NNCF post-training int8
}


def check_combination(format: str, quantize: str, precision: str | None) -> tuple[str, str]:
    """Validate (format, quantize, precision) and fill what follows from the others; returns
    (quantize, precision). int8 ONNX comes from a quantize method; int8 TensorRT is static QDQ."""
    methods, precisions = _ALLOWED[format]
    if quantize == "int8":  # OpenVINO's one int8 method (NNCF, calibrated) spelled by its result
        if format != "openvino":
            raise ConfigError(f"quantize 'int8' is OpenVINO's NNCF quantization; for format {format!r} use "
                              "dynamic or static.")
        quantize = "static"
    if quantize not in {"none", "dynamic", "static"}:
        raise ConfigError(f"quantize {quantize!r}: use none, dynamic or static (openvino: int8).")
    if precision is not None and precision not in {"fp32", "fp16", "bf16", "int8"}:
        raise ConfigError(f"precision {precision!r}: use fp32, fp16, bf16 or int8.")
    if format == "tensorrt" and (quantize == "static" or precision == "int8"):
        quantize, precision = "static", "int8"
    if precision is None:
        precision = "int8" if quantize != "none" else "fp32"
    if quantize not in methods:
        hint = {"pt2": "quantize the model first with a quantize step (it compiles the quantized model)",
                "tensorrt": "TensorRT has no dynamic quantization; use static (int8) or precision fp16",
                "openvino": "OpenVINO int8 is NNCF post-training quantization, calibrated: use quantize int8"}[format]
        raise ConfigError(f"Export format {format!r} does not take quantize {quantize!r}: {hint}.")
    if precision not in precisions:
        raise ConfigError(f"Export format {format!r} does not take precision {precision!r} "
                          f"(it takes {', '.join(sorted(precisions))}); fp16 engines need format tensorrt, "
                          "bf16 format openvino.")
    if format in ("onnx", "openvino") and (precision == "int8") != (quantize != "none"):
        raise ConfigError("For ONNX, int8 precision comes from quantize: dynamic or static (and a quantized "
                          f"model is int8); got quantize {quantize!r} with precision {precision!r}.")
    return quantize, precision


class ExportStepConfig(BaseModel):
    """Options of the ``export`` step."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    format: Literal["onnx", "pt2", "tensorrt", "openvino"] = "onnx"
    quantize: Literal["none", "dynamic", "static", "int8"] = "none"
    calibration_batches: int = Field(16, ge=1, le=4096, description="train batches used to calibrate static int8")
    precision: Literal["fp32", "fp16", "bf16", "int8"] | None = None  # None: follows from quantize

    @model_validator(mode="after")
    def _combination(self) -> ExportStepConfig:
        try:
            quantize, precision = check_combination(self.format, self.quantize, self.precision)
        except ConfigError as e:
            raise ValueError(e.message) from None
        object.__setattr__(self, "quantize", quantize)
        object.__setattr__(self, "precision", precision)
        return self

    def describe(self) -> str:
        parts = [f"format={self.format}"] + ([f"quantize={self.quantize}"] if self.quantize != "none" else [])
        return "export(" + ", ".join(parts + [f"precision={self.precision}"]) + ")"


def validate_step(options: dict[str, Any] | str | None) -> ExportStepConfig:
    """``export: onnx`` (a format name) or ``export: {format: ..., quantize: ..., ...}``."""
    if options is None:
        options = {}
    elif isinstance(options, str):
        options = {"format": options}
    if not isinstance(options, dict):
        raise ConfigError(f"Invalid export step: expected a format name or a mapping of options, got {type(options).__name__}.")
    try:
        return ExportStepConfig(**options)
    except ValidationError as e:
        raise config_error_from_pydantic(e, "export step") from None


def run_step(model: nn.Module, config: ExportStepConfig, ctx: StepContext) -> StepOutput:
    from torchslim.export import export
    from torchslim.export._common import FORMATS
    from torchslim.pipeline.context import StepOutput

    path = export(
        model, ctx.work_dir, ctx.example_inputs, format=config.format, task=ctx.data.task,
        input_names=ctx.input_names, quantize=config.quantize,
        calibration=ctx.data if config.quantize == "static" else None,  # openvino int8 is static too
        calibration_batches=config.calibration_batches, precision=config.precision,
        steps=[config.describe()], log=ctx.log,
    )
    from torchslim.artifacts import read_manifest

    parity = read_manifest(path).extra.get("parity", {})
    note = (f"{config.describe()}: outputs vs the PyTorch model on the example batch: max |diff| "
            f"{parity.get('max_abs_diff', float('nan')):.3g}, cosine {parity.get('cosine', float('nan')):.5f}")
    return StepOutput(model=model, runtime=FORMATS[config.format][0], artifact=path, notes=[note])
