"""The ``export`` recipe step: ``{export: {format: onnx, quantize: static, calibration_batches: 16}}``.

The step writes the candidate's final artifact into the candidate's work dir and names the
runtime it must be measured on; the model itself passes through unchanged.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch.nn as nn

from torchslim.export._config import ExportConfig, parse_export_config

if TYPE_CHECKING:  # the pipeline imports techniques, not the other way round
    from torchslim.core.step import StepContext, StepOutput

def validate_step(options: dict[str, Any] | str | None) -> ExportConfig:
    """``export: onnx`` (a format name) or ``export: {format: ..., quantize: ..., ...}``: the
    config class the format registered for those options (``torchslim.export._config``)."""
    return parse_export_config(options, "export step")


def run_step(model: nn.Module, config: ExportConfig, ctx: StepContext) -> StepOutput:
    from torchslim.core.manifest import read_manifest
    from torchslim.core.step import StepOutput
    from torchslim.export._api import export
    from torchslim.export._formats import FORMATS, ArtifactInfo
    from torchslim.quantize import Calibration, FallbackResult, Int8Tuning

    described = config.describe()
    if isinstance(config, Int8Tuning) and config.fallback and ctx.max_accuracy_drop is not None \
            and ctx.max_accuracy_drop < config.fallback_target_drop:
        # Never aim looser than the recipe's budget: a candidate outside it is discarded anyway.
        config = config.model_copy(update={"fallback_target_drop": ctx.max_accuracy_drop})
    path = export(model, ctx.work_dir, ctx.example_inputs, config,
                  data=ctx.data if isinstance(config, Calibration) else None,
                  info=ArtifactInfo(ctx.data.task, ctx.input_names, [described]), log=ctx.log)
    extra = read_manifest(path).extra
    parity = extra.get("parity", {})
    notes = [f"{described}: outputs vs the PyTorch model on the example batch: max |diff| "
             f"{parity.get('max_abs_diff', float('nan')):.3g}, cosine {parity.get('cosine', float('nan')):.5f}"]
    facts = {}
    quantization = extra.get("quantization", {})
    if quantization.get("fallback"):
        result = FallbackResult.model_validate(quantization["fallback"])
        facts["fallback"] = result
        notes += result.notes()
    if note := quantization.get("smoothing", {}).get("note"):
        notes.append(f"smoothquant {getattr(config, 'smoothquant', None)}: {note}.")
    if quantization.get("operators") == "weights":
        notes.append("ONNX static int8 of a transformer graph: only the Linear layers' MatMul/Gemm are quantized "
                     "(activation-only ops stay float); token models are calibrated per sentence at its own length.")
    return StepOutput(model=model, runtime=FORMATS.get(config.format).runtime, artifact=path, notes=notes, facts=facts,
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
