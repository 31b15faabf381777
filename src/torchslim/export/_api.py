"""The ``export`` verb and the table of exporters, one per format."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from torchslim.core.registry import WRITERS
from torchslim.errors import ArtifactError
from torchslim.export._common import FORMATS, check_combination, check_tuning, resolve_format
from torchslim.export._ort_static import StaticOptions


def export_onnx(module: nn.Module, out: str | Path, example_inputs: tuple[torch.Tensor, ...], **options: Any) -> Path:
    """ONNX export (+ optional ORT quantization); see ``torchslim.export._onnx.export_onnx``."""
    from torchslim.export._onnx import export_onnx as run

    return run(module, out, example_inputs, **options)


def quantize_onnx(artifact: str | Path, out: str | Path, method: str, **options: Any) -> Path:
    """ORT int8 quantization of an fp32 ONNX artifact; see ``torchslim.export._onnx.quantize_onnx``."""
    from torchslim.export._onnx import quantize_onnx as run

    return run(artifact, out, method, **options)


def export_aoti(module: nn.Module, out: str | Path, example_inputs: tuple[torch.Tensor, ...], **options: Any) -> Path:
    """AOTInductor package; see ``torchslim.export._aoti.export_aoti``."""
    from torchslim.export._aoti import export_aoti as run

    return run(module, out, example_inputs, **options)


def build_tensorrt(module: nn.Module, out: str | Path, example_inputs: tuple[torch.Tensor, ...], **options: Any) -> Path:
    """TensorRT engine via ONNX; see ``torchslim.export._tensorrt.build_tensorrt``."""
    from torchslim.export._tensorrt import build_tensorrt as run

    return run(module, out, example_inputs, **options)


def export_openvino(module: nn.Module, out: str | Path, example_inputs: tuple[torch.Tensor, ...], **options: Any) -> Path:
    """OpenVINO IR (+ optional NNCF int8); see ``torchslim.export._openvino.export_openvino``."""
    from torchslim.export._openvino import export_openvino as run

    return run(module, out, example_inputs, **options)


def _onnx(module, out, example_inputs, *, quantize, precision, static, **common):
    return export_onnx(module, out, example_inputs, quantize=quantize, static=static, **common)


def _pt2(module, out, example_inputs, *, quantize, precision, static, calibration, calibration_batches, **common):
    return export_aoti(module, out, example_inputs, **common)


def _tensorrt(module, out, example_inputs, *, quantize, precision, static, **common):
    return build_tensorrt(module, out, example_inputs, precision=precision, **common)


def _openvino(module, out, example_inputs, *, quantize, precision, static, **common):
    return export_openvino(module, out, example_inputs, quantize=quantize, precision=precision, static=static, **common)


_EXPORTERS: dict[str, Callable[..., Path]] = {"onnx": _onnx, "pt2": _pt2, "tensorrt": _tensorrt, "openvino": _openvino}


def export(
    module: nn.Module,
    out: str | Path,
    example_inputs: tuple[torch.Tensor, ...],
    *,
    format: str | None = None,
    runtime: str | None = None,
    task: str = "classification",
    input_names: list[str] | None = None,
    quantize: str = "none",
    calibration: Any = None,
    calibration_batches: int = 16,
    precision: str | None = None,
    smoothquant: float | str | None = None,
    fallback: str | None = None,
    fallback_target_drop: float = 0.5,
    fallback_max_layers: int = 8,
    steps: list[str] | None = None,
    log: Callable[[str], None] = lambda _m: None,
) -> Path:
    """Write ``module`` as a deployable artifact + manifest; returns the artifact path.

    ``out`` is a file path (its suffix must fit the format) or a folder (``model.onnx`` etc.
    inside it). Name the format, or the runtime that should run it (``onnxruntime``, ``aoti``,
    ``tensorrt``); ONNX is the default. ``quantize`` ("none" | "dynamic" | "static") is ONNX
    Runtime's int8 quantization (static needs ``calibration``: a DataBundle, whose train
    split is used, or an iterable of input tuples; ``calibration_batches`` of them). For
    TensorRT, ``precision`` is fp32 | fp16 | int8 (int8 = static QDQ, needs calibration).
    ONNX static int8 and OpenVINO int8 (NNCF) also take ``smoothquant`` (alpha in [0, 1] or
    "auto"; ONNX: SmoothQuant on a copy of the model before the export; OpenVINO: NNCF's own
    with that alpha, "auto" as for ONNX, see ``_openvino_quant``) and ``fallback="auto"`` (the
    layers that cost the most on the validation split of a DataBundle ``calibration`` stay in
    float, one at a time, until within ``fallback_target_drop`` points or
    ``fallback_max_layers`` tries).
    """
    if not isinstance(example_inputs, tuple):
        example_inputs = tuple(example_inputs) if isinstance(example_inputs, list) else (example_inputs,)
    chosen = resolve_format(format, runtime)
    quantize, precision = check_combination(chosen, quantize, precision)
    static = StaticOptions(smoothquant, fallback, fallback_target_drop, fallback_max_layers)
    check_tuning(chosen, quantize, static != StaticOptions())
    if not steps:
        described = ", ".join(f"{k}={v}" for k, v in (("format", chosen), ("quantize", quantize), ("precision", precision))
                              if not (k == "quantize" and v == "none"))
        steps = [f"export({described})"]
    return _EXPORTERS[chosen](module, out, example_inputs, task=task, input_names=input_names, quantize=quantize,
                              precision=precision, static=static, calibration=calibration,
                              calibration_batches=calibration_batches, steps=steps, log=log)


def onnx_param_count(path: str | Path) -> int:
    """Parameters of an ONNX model: the elements of its weight initializers (a quantized model
    counts each int8 weight once, and also its per-channel scales and zero-points)."""
    import math

    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise ArtifactError(f"Cannot read {str(path)!r} as an ONNX model ({e}).") from None
    # int64 initializers are shape constants (reshape targets, axes) and scalars are folded
    # constants (an attention scale), not weights.
    return sum(math.prod(init.dims) for init in model.graph.initializer
               if init.data_type != onnx.TensorProto.INT64 and len(init.dims) > 0)


def writer_for(runtime: str):
    """The artifact writer for ``runtime`` (its format's exporter, default options)."""
    def write(model, folder: Path, example_inputs, *, task, input_names, steps=None):
        return export(model, folder, example_inputs, runtime=runtime, task=task, input_names=input_names, steps=steps)
    return write


for _format, (_runtime, _suffix) in FORMATS.items():
    WRITERS.register(_runtime, writer_for(_runtime))
