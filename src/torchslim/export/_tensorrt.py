"""ONNX -> a serialized TensorRT engine (``.engine``), fp32, fp16 or int8.

UNTESTED ON A GPU: written against the TensorRT 10 Python API (named I/O tensors,
``build_serialized_network``, ``execute_async_v3``) but never run; no GPU was available
while it was built. Tests marked ``gpu`` exercise it where CUDA and TensorRT exist.

int8 uses explicit quantization: the model is exported to a QDQ ONNX model (ONNX Runtime's
static quantization, calibrated on real batches, symmetric activations as TensorRT requires)
and TensorRT compiles the Q/DQ pairs into int8 kernels. TensorRT 10 deprecates the older
implicit path (an ``IInt8Calibrator`` plus the INT8 flag on an fp32 network), so it is not
offered. An engine is specific to the GPU model and TensorRT version that built it; the
manifest records both.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from torchslim.core.files import atomic_write_bytes
from torchslim.core.manifest import Manifest, input_specs, write_manifest
from torchslim.core.padding import padding_extra
from torchslim.errors import ConfigError, ExportError
from torchslim.export import _common as common
from torchslim.export._config import ExportConfig
from torchslim.export._formats import ArtifactInfo
from torchslim.runtime import MAX_BATCH_SIZE, build_engine, require_tensorrt


def write_tensorrt(module: nn.Module, path: Path, example_inputs: tuple[torch.Tensor, ...], config: ExportConfig, *,
                   data: Any, info: ArtifactInfo, log: Callable[[str], None]) -> Path:
    """Export ``module`` to ONNX, build a TensorRT engine at ``path``; int8 (``TensorRTInt8Config``)
    goes through a QDQ ONNX model calibrated on ``data``."""
    from torchslim.export._config import OnnxConfig, OnnxStaticInt8Config
    from torchslim.export._onnx import write_onnx
    from torchslim.quantize import Calibration

    precision, task = config.precision, info.task
    if precision == "int8" and data is None:
        raise ConfigError("An int8 TensorRT engine needs calibration data (data=, a DataBundle or input "
                          "tuples) to set activation ranges; or build it with precision fp16.")
    trt = require_tensorrt()
    device = torch.device("cuda", torch.cuda.current_device())
    example = tuple(t.detach() for t in example_inputs)
    names = [spec.name for spec in input_specs(example, info.input_names)]
    onnx_config = (OnnxStaticInt8Config(**{k: getattr(config, k) for k in Calibration.model_fields})
                   if isinstance(config, Calibration) else OnnxConfig())
    with tempfile.TemporaryDirectory(prefix="torchslim-trt-") as tmp:
        onnx_path = write_onnx(module, Path(tmp) / "model.onnx", example, onnx_config, data=data,
                               info=ArtifactInfo(task, names), log=log, symmetric_activations=True)
        log(f"building a TensorRT {precision} engine")
        specs = input_specs(common.batch_of_two(example), names)
        engine = build_engine(onnx_path.read_bytes(), specs, precision)
    from torchslim.runtime.tensorrt import TensorRTModel

    compiled = TensorRTModel(engine, device)
    batches = [tuple(t.to(device) for t in b) for b in common.parity_inputs(common.batch_of_two(example))]
    with common.eval_mode(module), torch.no_grad():
        references = common.reference_outputs(module, [tuple(t.to(next(module.parameters()).device) for t in b) for b in batches])
        padding = padding_extra(module, example, names)
    worst = None
    for batch, reference in zip(batches, references, strict=True):
        out_tensors = compiled(*batch)
        parity = common.compare(reference, out_tensors if isinstance(out_tensors, tuple) else (out_tensors,), precision)
        if not parity.ok:
            raise ExportError(f"The TensorRT {precision} engine of {type(module).__name__} does not match PyTorch on a "
                              f"batch of {len(batch[0])}: {parity.describe()}. Try a higher precision.")
        worst = parity if worst is None or parity.max_abs_diff > worst.max_abs_diff else worst
    atomic_write_bytes(path, engine)
    extra = {"precision": precision, "tensorrt": trt.__version__, "gpu": torch.cuda.get_device_name(device),
             "max_batch_size": MAX_BATCH_SIZE, "parity": worst.as_dict()} | padding
    write_manifest(path, Manifest("tensorrt", "tensorrt", specs, task, info.steps or [], extra))
    return path
