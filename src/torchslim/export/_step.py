"""The ``export`` recipe step: ``{export: {format: onnx, quantize: static, calibration_batches: 16}}``.

The step writes the candidate's final artifact into the candidate's work dir and names the
runtime it must be measured on; the model itself passes through unchanged.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated, Any, Literal

import torch.nn as nn
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from torchslim.errors import ConfigError, config_error_from_pydantic
from torchslim.export._common import check_combination, check_tuning

if TYPE_CHECKING:  # the pipeline imports techniques, not the other way round
    from torchslim.core.step import StepContext, StepOutput

class ExportStepConfig(BaseModel):
    """Options of the ``export`` step."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    format: Literal["onnx", "pt2", "tensorrt", "openvino"] = "onnx"
    quantize: Literal["none", "dynamic", "static", "int8"] = "none"
    calibration_batches: int = Field(16, ge=1, le=4096, description="train batches used to calibrate static int8")
    precision: Literal["fp32", "fp16", "bf16", "int8"] | None = None  # None: follows from quantize
    smoothquant: Annotated[float, Field(ge=0.0, le=1.0)] | Literal["auto"] | None = Field(
        default=None, description="ONNX static / OpenVINO int8: alpha in [0, 1] (ONNX: torchslim's SmoothQuant "
        "before the export; OpenVINO: NNCF's, token models only), 'auto' (torchslim's, per layer from a grid, "
        "before the export) or null (ONNX: off; OpenVINO: NNCF's default)")
    fallback: Literal["auto"] | None = Field(
        default=None, description="ONNX static / OpenVINO int8: 'auto' keeps the layers that cost the most on "
        "the validation split in float, one at a time, until within fallback_target_drop; null: off")
    fallback_target_drop: float = Field(0.5, ge=0.0, le=100.0, description="metric drop (points) fallback stops at")
    fallback_max_layers: int = Field(8, ge=1, le=1000, description="most layers fallback tries in float")

    @model_validator(mode="after")
    def _combination(self) -> ExportStepConfig:
        try:
            quantize, precision = check_combination(self.format, self.quantize, self.precision)
        except ConfigError as e:
            raise ValueError(e.message) from None
        object.__setattr__(self, "quantize", quantize)
        object.__setattr__(self, "precision", precision)
        try:
            check_tuning(self.format, quantize, self.smoothquant is not None or self.fallback is not None)
        except ConfigError as e:
            raise ValueError(e.message) from None
        return self

    def describe(self) -> str:
        parts = [f"format={self.format}"] + ([f"quantize={self.quantize}"] if self.quantize != "none" else [])
        parts += [f"precision={self.precision}"]
        parts += [f"{k}={v}" for k, v in self.model_dump(include={"smoothquant", "fallback"}).items() if v is not None]
        if self.fallback is not None:
            parts += [f"{k}={getattr(self, k)}" for k in ("fallback_target_drop", "fallback_max_layers")
                      if k in self.model_fields_set]
        return "export(" + ", ".join(parts) + ")"


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
    from torchslim.core.manifest import read_manifest
    from torchslim.core.step import StepOutput
    from torchslim.export._api import export
    from torchslim.export._common import FORMATS

    target_drop = config.fallback_target_drop
    if config.fallback and ctx.max_accuracy_drop is not None:
        # Never aim looser than the recipe's budget: a candidate outside it is discarded anyway.
        target_drop = min(target_drop, ctx.max_accuracy_drop)
    path = export(
        model, ctx.work_dir, ctx.example_inputs, format=config.format, task=ctx.data.task,
        input_names=ctx.input_names, quantize=config.quantize,
        calibration=ctx.data if config.quantize == "static" else None,  # openvino int8 is static too
        calibration_batches=config.calibration_batches, precision=config.precision,
        smoothquant=config.smoothquant, fallback=config.fallback, fallback_target_drop=target_drop,
        fallback_max_layers=config.fallback_max_layers, steps=[config.describe()], log=ctx.log,
    )
    extra = read_manifest(path).extra
    parity = extra.get("parity", {})
    notes = [f"{config.describe()}: outputs vs the PyTorch model on the example batch: max |diff| "
             f"{parity.get('max_abs_diff', float('nan')):.3g}, cosine {parity.get('cosine', float('nan')):.5f}"]
    facts = {}
    quantization = extra.get("quantization", {})
    if quantization.get("fallback"):
        from torchslim.quantize import FallbackResult

        facts["fallback"] = quantization["fallback"]
        notes += FallbackResult.from_dict(quantization["fallback"]).notes()
    if note := quantization.get("smoothing", {}).get("note"):
        notes.append(f"smoothquant {config.smoothquant}: {note}.")
    if quantization.get("operators") == "weights":
        notes.append("ONNX static int8 of a transformer graph: only the Linear layers' MatMul/Gemm are quantized "
                     "(activation-only ops stay float); token models are calibrated per sentence at its own length.")
    return StepOutput(model=model, runtime=FORMATS[config.format][0], artifact=path, notes=notes, facts=facts,
                      changes=_stored_weights(path, config.format) if config.quantize != "none" else [])


def _stored_weights(path, fmt: str) -> list:
    """One change saying how the file stores the weights (int8 or float, how many), read back
    from the file itself: a model diff cannot see inside an ONNX or OpenVINO file."""
    from collections import Counter

    from torchslim.core.changes import LayerChange

    counts: Counter = Counter()
    values: Counter = Counter()
    try:
        if fmt == "onnx":
            import onnx

            for init in onnx.load(str(path), load_external_data=False).graph.initializer:
                if len(init.dims) >= 2:  # weights; biases and scales are vectors
                    name = onnx.TensorProto.DataType.Name(init.data_type).lower()
                    counts[name] += 1
                    values[name] += int(math.prod(init.dims))
        elif fmt == "openvino":
            import xml.etree.ElementTree as ET

            for layer in ET.parse(path).getroot().iter("layer"):
                data = layer.find("data")
                shape = (data.get("shape") or "").split(",") if data is not None else []
                if layer.get("type") == "Const" and len(shape) >= 2 and all(x.strip().isdigit() for x in shape):
                    name = {"i8": "int8", "u8": "uint8", "f32": "float", "f16": "float16"}.get(data.get("element_type"), data.get("element_type"))
                    counts[name] += 1
                    values[name] += int(math.prod(int(x) for x in shape))
    except Exception:  # noqa: BLE001  (a courtesy for the report; the artifact itself was checked above)
        return []
    if not counts:
        return []
    kind = "quantized" if any(k in counts for k in ("int8", "uint8")) else "converted"
    detail = ", ".join(f"{counts[k]} {k} weight tensors ({values[k]:,} values)" for k in sorted(counts))
    return [LayerChange("", kind, f"the {fmt} file stores {detail}")]
