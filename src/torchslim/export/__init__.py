"""Export a model to a deployable file: one verb, one typed config per format (and per
quantization flavour where it needs options), and the recipe step that does it.

    export(model, out, inputs, OnnxStaticInt8Config(fallback="auto"), data=bundle) -> Path
    export(model, out, inputs, {"format": "openvino", "quantize": "int8"}, data=bundle)

Formats (``FORMATS``; the runtime that runs each is recorded in the manifest beside the file):
    onnx       one self-contained ``.onnx`` file; ONNX Runtime. ``OnnxConfig`` (fp32),
               ``OnnxDynamicInt8Config`` (quantize: dynamic), ``OnnxStaticInt8Config``
               (quantize: static: QDQ per-channel, calibrated; SmoothQuant, fallback),
               ``OnnxWeightOnlyInt8Config`` (quantize: weight-only: per-channel int8 weights
               folded back to float at load: ~4x smaller, fp32 speed)
    pt2        an AOTInductor package (``.pt2``); runtime ``aoti``. ``AOTIConfig``
    tensorrt   a TensorRT engine (``.engine``) built from the ONNX model; needs CUDA and
               ``pip install 'torchslim[tensorrt]'``. ``TensorRTConfig`` (fp32, fp16),
               ``TensorRTInt8Config`` (static QDQ, calibrated)
    openvino   OpenVINO IR (``.xml`` + ``.bin`` weights beside it). ``OpenVINOConfig`` (fp32,
               bf16: a compile hint), ``OpenVINOInt8Config`` (quantize: int8: NNCF, calibrated;
               SmoothQuant, fallback)

A plug-in adds a format with ``register_format(ExportFormat(name, runtime, suffix, (its config
classes), its writer))``: the verb, the recipe step and ``torchslim export --format`` take it.
Every artifact is checked before it is written: the exporter's errors become ExportError
with its reason, and outputs must match the PyTorch model within a stated tolerance
(``torchslim.export._common``: fp32 max |diff| <= 1e-4 + 1e-3 x max |output|; int8
cosine >= 0.98; fp16 cosine >= 0.999) on the example batch and on a batch of another size.
``torchslim.load(path)`` returns a callable for any of them.
"""

from __future__ import annotations

from torchslim.core.registry import TECHNIQUES, Technique
from torchslim.export._api import (
    export,
    onnx_param_count,
    quantize_onnx,
    register_format,
    unregister_format,
    writer_for,
)
from torchslim.export._config import (
    AOTIConfig,
    ExportConfig,
    OnnxConfig,
    OnnxDynamicInt8Config,
    OnnxStaticInt8Config,
    OnnxWeightOnlyInt8Config,
    OpenVINOConfig,
    OpenVINOInt8Config,
    TensorRTConfig,
    TensorRTInt8Config,
    parse_export_config,
)
from torchslim.export._formats import (
    FORMATS,
    ArtifactInfo,
    ExportFormat,
    output_path,
    resolve_format,
)
from torchslim.export._step import run_step, validate_step

__all__ = [
    "AOTIConfig",
    "ArtifactInfo",
    "ExportConfig",
    "ExportFormat",
    "FORMATS",
    "OnnxConfig",
    "OnnxDynamicInt8Config",
    "OnnxStaticInt8Config",
    "OnnxWeightOnlyInt8Config",
    "OpenVINOConfig",
    "OpenVINOInt8Config",
    "TensorRTConfig",
    "TensorRTInt8Config",
    "export",
    "onnx_param_count",
    "output_path",
    "parse_export_config",
    "quantize_onnx",
    "register_format",
    "resolve_format",
    "run_step",
    "unregister_format",
    "validate_step",
    "writer_for",
]

TECHNIQUES.register("export", Technique("export", validate_step, run_step,
                                        "a deployable file: ONNX (+ ORT int8), AOTInductor, TensorRT, OpenVINO"))
