"""Export a model to a deployable file, and the recipe step that does it.

    export(module, out, example_inputs, format="onnx" | "pt2" | "tensorrt", ...) -> Path

Formats (the runtime that runs each, recorded in the manifest beside the file):
    onnx       one self-contained ``.onnx`` file; ONNX Runtime (optionally ORT int8:
               quantize="dynamic" or "static" QDQ per-channel, calibrated)
    pt2        an AOTInductor package (``.pt2``); runtime ``aoti``
    tensorrt   a TensorRT engine (``.engine``) built from the ONNX model; fp32/fp16/int8;
               needs CUDA and ``pip install 'torchslim[tensorrt]'`` (untested on GPU)
    openvino   OpenVINO IR (``.xml`` + ``.bin`` weights beside it); fp32, bf16 (a compile hint)
               or int8 (quantize="int8": NNCF post-training quantization, calibrated; with
               smoothquant= and fallback="auto" as ONNX static int8 takes them)

Every artifact is checked before it is written: the exporter's errors become ExportError
with its reason, and outputs must match the PyTorch model within a stated tolerance
(``torchslim.export._common``: fp32 max |diff| <= 1e-4 + 1e-3 x max |output|; int8
cosine >= 0.98; fp16 cosine >= 0.999) on the example batch and on a batch of another size.
``torchslim.load(path)`` returns a callable for any of them.
"""

from __future__ import annotations

from torchslim.core.registry import TECHNIQUES, Technique
from torchslim.export._api import (
    build_tensorrt,
    export,
    export_aoti,
    export_onnx,
    export_openvino,
    onnx_param_count,
    quantize_onnx,
    writer_for,
)
from torchslim.export._common import FORMATS, check_tuning, output_path, resolve_format
from torchslim.export._ort_static import StaticOptions
from torchslim.export._step import ExportStepConfig, check_combination, run_step, validate_step

__all__ = [
    "FORMATS",
    "ExportStepConfig",
    "build_tensorrt",
    "export",
    "export_aoti",
    "export_onnx",
    "export_openvino",
    "export_openvino",
    "onnx_param_count",
    "quantize_onnx",
    "run_step",
    "validate_step",
    "writer_for",
    "check_tuning",
    "output_path",
    "resolve_format",
    "StaticOptions",
    "check_combination",
]

TECHNIQUES.register("export", Technique("export", validate_step, run_step, "a deployable file: ONNX (+ ORT int8), AOTInductor, TensorRT"))
