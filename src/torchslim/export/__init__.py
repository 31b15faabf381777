"""Export a model to a deployable file, and the recipe step that does it.

    export(module, out, example_inputs, format="onnx" | "pt2" | "tensorrt", ...) -> Path

Formats (the runtime that runs each, recorded in the manifest beside the file):
    onnx       one self-contained ``.onnx`` file; ONNX Runtime (optionally ORT int8:
               quantize="dynamic" or "static" QDQ per-channel, calibrated)
    pt2        an AOTInductor package (``.pt2``); runtime ``aoti``
    tensorrt   a TensorRT engine (``.engine``) built from the ONNX model; fp32/fp16/int8;
               needs CUDA and ``pip install 'torchslim[tensorrt]'`` (untested on GPU)
    openvino   OpenVINO IR (``.xml`` + ``.bin`` weights beside it); fp32, bf16 (a compile hint)
               or int8 (quantize="int8": NNCF post-training quantization, calibrated)

Every artifact is checked before it is written: the exporter's errors become ExportError
with its reason, and outputs must match the PyTorch model within a stated tolerance
(``torchslim.export._common``: fp32 max |diff| <= 1e-4 + 1e-3 x max |output|; int8
cosine >= 0.98; fp16 cosine >= 0.999) on the example batch and on a batch of another size.
``torchslim.load(path)`` returns a callable for any of them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from torchslim.errors import ArtifactError
from torchslim.export._common import FORMATS, resolve_format
from torchslim.export._step import ExportStepConfig, check_combination, run_step, validate_step


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


def _onnx(module, out, example_inputs, *, quantize, precision, **common):
    return export_onnx(module, out, example_inputs, quantize=quantize, **common)


def _pt2(module, out, example_inputs, *, quantize, precision, calibration, calibration_batches, **common):
    return export_aoti(module, out, example_inputs, **common)


def _tensorrt(module, out, example_inputs, *, quantize, precision, **common):
    return build_tensorrt(module, out, example_inputs, precision=precision, **common)


def _openvino(module, out, example_inputs, *, quantize, precision, **common):
    return export_openvino(module, out, example_inputs, quantize=quantize, precision=precision, **common)


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
    steps: list[str] | None = None,
    log: Callable[[str], None] = lambda _m: None,
) -> Path:
    """Write ``module`` as a deployable artifact + manifest; returns the artifact path.

    ``out`` is a file path (its suffix must fit the format) or a folder (``model.onnx`` etc.
    inside it). Name the format, or the runtime that should run it (``onnxruntime``, ``aoti``,
    ``tensorrt``); ONNX is the default. ``quantize`` ("none" | "dynamic" | "static") is ONNX
    Runtime's int8 quantization (static needs ``calibration``: a DataBundle, whose train
    split is used, or an iterable of input tuples; ``calibration_batches`` of them). For
    TensorRT, ``precision`` is fp32 | fp16 | int8 (int8 = static QDQ, needs calibration). For
    OpenVINO, ``quantize="int8"`` (or "static") is NNCF int8 and needs calibration; ``precision``
    bf16 is a compile-time hint the CPU plugin honours only on AVX512-BF16/AMX CPUs.
    """
    if not isinstance(example_inputs, tuple):
        example_inputs = tuple(example_inputs) if isinstance(example_inputs, list) else (example_inputs,)
    chosen = resolve_format(format, runtime)
    quantize, precision = check_combination(chosen, quantize, precision)
    if not steps:
        described = ", ".join(f"{k}={v}" for k, v in (("format", chosen), ("quantize", quantize), ("precision", precision))
                              if not (k == "quantize" and v == "none"))
        steps = [f"export({described})"]
    return _EXPORTERS[chosen](module, out, example_inputs, task=task, input_names=input_names, quantize=quantize,
                              precision=precision, calibration=calibration, calibration_batches=calibration_batches,
                              steps=steps, log=log)


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


__all__ = [
    "FORMATS",
    "ExportStepConfig",
    "build_tensorrt",
    "export",
    "export_aoti",
    "export_onnx",
    "export_openvino",
    "onnx_param_count",
    "quantize_onnx",
    "run_step",
    "validate_step",
]
