"""Building a TensorRT engine from ONNX bytes: shared by the tensorrt runtime (an ONNX artifact
run on TensorRT is built in memory) and the exporter (which writes the engine to disk).

UNTESTED ON A GPU: written against the TensorRT 10 Python API; tests marked ``gpu`` run it.
"""

from __future__ import annotations

from typing import Any

import torch

from torchslim.core.manifest import InputSpec
from torchslim.errors import ExportError, UnsupportedError

MAX_BATCH_SIZE = 256  # the optimization profile's upper bound; larger batches need a rebuild
WORKSPACE_BYTES = 1 << 30


def require_tensorrt() -> Any:
    """The ``tensorrt`` module, or UnsupportedError saying what is missing."""
    problems = []
    if not torch.cuda.is_available():
        problems.append("no CUDA GPU is visible to torch (TensorRT runs only on NVIDIA GPUs)")
    try:
        import tensorrt
    except ImportError:
        tensorrt = None
        problems.append("the tensorrt package is not installed (pip install 'torchslim[tensorrt]', TensorRT >= 10)")
    if problems:
        raise UnsupportedError("TensorRT cannot run on this machine: " + "; ".join(problems) + ". Use format onnx "
                               "(runtime onnxruntime) or pt2 (runtime aoti) here, or build the engine on a machine "
                               "with an NVIDIA GPU, CUDA and TensorRT.")
    return tensorrt


def build_engine(onnx_bytes: bytes, inputs: list[InputSpec], precision: str = "fp32") -> bytes:
    """A serialized engine for an ONNX model; batch 1..MAX_BATCH_SIZE, a token input's sequence
    length 1..its example length."""
    trt = require_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT's ONNX parser rejected the model: {errors or 'no reason given'}.")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if precision == "fp32":
        config.clear_flag(trt.BuilderFlag.TF32)  # fp32 means fp32: TF32 matmuls drift ~1e-3
    elif precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)  # honours the Q/DQ nodes of the QDQ model
        config.set_flag(trt.BuilderFlag.FP16)  # layers left unquantized may use fp16 rather than fp32
    profile = builder.create_optimization_profile()
    for spec in inputs:
        low, opt, high = ([1, *spec.shape[1:]], [min(32, MAX_BATCH_SIZE), *spec.shape[1:]], [MAX_BATCH_SIZE, *spec.shape[1:]])
        if len(spec.shape) == 2 and spec.dtype in ("int64", "int32"):
            low[1] = 1
        profile.set_shape(spec.name, low, opt, high)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT could not build a {precision} engine for this model (see the TensorRT log above).")
    return bytes(serialized)
