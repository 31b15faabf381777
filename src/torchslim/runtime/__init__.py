"""Runtimes: one protocol, one module per runtime.

A runtime turns an artifact (file + manifest) into a callable that takes the original
model's inputs. The table maps names to ``module:class`` and is imported lazily, so an
optional backend (onnxruntime, tensorrt) costs nothing until it is used.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Protocol

import torch

from torchslim.errors import ConfigError

_RUNTIMES = {
    "eager": "torchslim.runtime.eager:EagerRuntime",
    "compile": "torchslim.runtime.compiled:CompileRuntime",
    "aoti": "torchslim.runtime.aoti:AOTIRuntime",
    "onnxruntime": "torchslim.runtime.onnxrt:OnnxRuntime",
    "tensorrt": "torchslim.runtime.tensorrt:TensorRTRuntime",
    "tslim": "torchslim.runtime.tslim:TslimRuntime",
    "openvino": "torchslim.runtime.openvino:OpenVINORuntime",
}


class Runtime(Protocol):
    name: str

    def load(self, path: Path, manifest: Any, *, device: str | torch.device = "cpu") -> Any:
        """Return a callable ``f(*inputs)`` equivalent to the original model."""
        ...


def list_runtimes() -> list[str]:
    return list(_RUNTIMES)


def get_runtime(name: str) -> Runtime:
    if name not in _RUNTIMES:
        raise ConfigError(f"Unknown runtime {name!r}. Known runtimes: {', '.join(_RUNTIMES)}.")
    module_name, _, cls_name = _RUNTIMES[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and e.name.startswith("torchslim"):
            raise ConfigError(f"Runtime {name!r} is not available in this version of torchslim.") from None
        raise
    return getattr(module, cls_name)()


__all__ = ["Runtime", "get_runtime", "list_runtimes"]
