"""The ``export`` recipe step: ``{export: {format: onnx, quantize: static, calibration_batches: 16}}``.

The step writes the candidate's final artifact into the candidate's work dir and names the
runtime it must be measured on; the model itself passes through unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import torch.nn as nn
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from torchslim.errors import ConfigError, config_error_from_pydantic
from torchslim.export._common import check_combination

if TYPE_CHECKING:  # the pipeline imports techniques, not the other way round
    from torchslim.core.step import StepContext, StepOutput

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
    from torchslim.core.step import StepOutput
    from torchslim.export._api import export
    from torchslim.export._common import FORMATS

    path = export(
        model, ctx.work_dir, ctx.example_inputs, format=config.format, task=ctx.data.task,
        input_names=ctx.input_names, quantize=config.quantize,
        calibration=ctx.data if config.quantize == "static" else None,  # openvino int8 is static too
        calibration_batches=config.calibration_batches, precision=config.precision,
        steps=[config.describe()], log=ctx.log,
    )
    from torchslim.core.manifest import read_manifest

    parity = read_manifest(path).extra.get("parity", {})
    note = (f"{config.describe()}: outputs vs the PyTorch model on the example batch: max |diff| "
            f"{parity.get('max_abs_diff', float('nan')):.3g}, cosine {parity.get('cosine', float('nan')):.5f}")
    return StepOutput(model=model, runtime=FORMATS[config.format][0], artifact=path, notes=[note])
