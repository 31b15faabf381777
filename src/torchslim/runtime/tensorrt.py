"""TensorRT: runs ``.engine`` artifacts (or builds an fp32 engine from an ``.onnx`` one) on CUDA.

UNTESTED ON A GPU: written against the TensorRT 10 Python API but never run; see
docs/deployment.md. Without CUDA or without the ``tensorrt`` package, loading raises
UnsupportedError naming what to install.

Inputs are torch tensors; they are moved to the engine's GPU and cast to the dtype the engine
expects, and outputs are torch tensors on that GPU, written by TensorRT directly into memory
torch allocated (no host round trip). Work is enqueued on torch's current stream, so a
caller's ``torch.cuda.synchronize()`` (the harness does one before reading the clock) waits
for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from torchslim.errors import ArtifactError, UnsupportedError


def _torch_dtype(trt: Any, dtype: Any) -> torch.dtype:
    table = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16, trt.DataType.INT32: torch.int32,
             trt.DataType.INT8: torch.int8, trt.DataType.BOOL: torch.bool}
    for name, torch_type in (("INT64", torch.int64), ("BF16", torch.bfloat16)):
        if hasattr(trt.DataType, name):
            table[getattr(trt.DataType, name)] = torch_type
    return table[dtype]


class TensorRTModel:
    """``model(*inputs)`` -> a CUDA tensor (a tuple when the engine has several outputs)."""

    def __init__(self, engine_bytes: bytes, device: str | torch.device = "cuda") -> None:
        from torchslim.runtime._tensorrt_engine import require_tensorrt

        trt = require_tensorrt()
        self._trt = trt
        self.device = torch.device(device)
        if self.device.type != "cuda":
            self.device = torch.device("cuda", torch.cuda.current_device())
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        with torch.cuda.device(self.device):
            self.engine = self._runtime.deserialize_cuda_engine(engine_bytes)
            if self.engine is None:
                raise ArtifactError("TensorRT could not deserialize the engine: it was built for another GPU or "
                                    "TensorRT version. Rebuild it on this machine (torchslim export --format tensorrt).")
            self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]

    def __call__(self, *inputs: torch.Tensor) -> Any:
        if len(inputs) != len(self.input_names):
            raise TypeError(f"this engine takes {len(self.input_names)} inputs ({', '.join(self.input_names)}), got {len(inputs)}")
        keep_alive = []
        for name, tensor in zip(self.input_names, inputs, strict=True):
            dtype = _torch_dtype(self._trt, self.engine.get_tensor_dtype(name))
            tensor = tensor.to(self.device, dtype).contiguous()
            keep_alive.append(tensor)
            self.context.set_input_shape(name, tuple(tensor.shape))
            self.context.set_tensor_address(name, tensor.data_ptr())
        outputs = []
        for name in self.output_names:
            shape = tuple(self.context.get_tensor_shape(name))
            out = torch.empty(shape, dtype=_torch_dtype(self._trt, self.engine.get_tensor_dtype(name)), device=self.device)
            self.context.set_tensor_address(name, out.data_ptr())
            outputs.append(out)
        stream = torch.cuda.current_stream(self.device)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT failed to enqueue the engine (see the TensorRT log)")
        outputs = [o.float() if o.dtype == torch.float16 else o for o in outputs]  # callers compare in fp32
        return outputs[0] if len(outputs) == 1 else tuple(outputs)


class TensorRTRuntime:
    name = "tensorrt"

    def load(self, path: Path, manifest, *, device="cuda") -> TensorRTModel:
        from torchslim.runtime._tensorrt_engine import build_engine, require_tensorrt

        require_tensorrt()
        if manifest.format == "tensorrt":
            engine = Path(path).read_bytes()
        elif manifest.format == "onnx":
            # An ONNX artifact run on TensorRT: build the engine in memory (minutes for big models).
            if manifest.extra.get("quantize") == "dynamic":
                raise UnsupportedError(f"{str(path)!r} uses ONNX Runtime's dynamic quantization, which TensorRT "
                                       "cannot run; export with quantize none or static for TensorRT.")
            engine = build_engine(Path(path).read_bytes(), manifest.inputs, manifest.extra.get("precision", "fp32"))
        else:
            raise ArtifactError(f"The tensorrt runtime runs .engine and .onnx artifacts, not {manifest.format!r} "
                                f"({str(path)!r}); load it with its own runtime ({manifest.runtime!r}).")
        return TensorRTModel(engine, device)
