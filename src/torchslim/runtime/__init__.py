"""Runtimes: one protocol, one module per runtime.

A runtime turns an artifact (file + manifest) into a callable that takes the original
model's inputs. Runtimes are entries of ``torchslim.core.registry.RUNTIMES``; the built-in
ones are registered here with factories that import their module on first use, so an
optional backend (onnxruntime, tensorrt) costs nothing until it is used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch

from torchslim.core.registry import RUNTIMES, RuntimeEntry
from torchslim.runtime._settings import (
    SETTINGS_CLASSES,
    OpenVINOSettings,
    OrtSettings,
    TorchSettings,
    apply_torch_settings,
    default_settings,
    parse_settings,
    settings_from_manifest,
    thread_budget,
    tuned_elsewhere,
    with_settings,
    write_settings,
)
from torchslim.runtime._tensorrt_engine import MAX_BATCH_SIZE, build_engine, require_tensorrt


def _lazy(module: str, cls: str) -> Callable[[], Any]:
    """A factory importing this package's runtime module only when the runtime is first used."""
    return lambda: getattr(importlib.import_module(f"torchslim.runtime.{module}"), cls)()


for _name, _formats, _module, _cls in (
    ("eager", ("exported",), "eager", "EagerRuntime"),
    ("compile", ("exported",), "compiled", "CompileRuntime"),
    ("aoti", ("aoti",), "aoti", "AOTIRuntime"),
    ("onnxruntime", ("onnx",), "onnxrt", "OnnxRuntime"),
    ("tensorrt", ("tensorrt", "onnx"), "tensorrt", "TensorRTRuntime"),
    ("tslim", ("tslim",), "tslim", "TslimRuntime"),
    ("openvino", ("openvino",), "openvino", "OpenVINORuntime"),
):
    RUNTIMES.register(_name, RuntimeEntry(_name, _formats, _lazy(_module, _cls)))


class Runtime(Protocol):
    name: str

    def load(self, path: Path, manifest: Any, *, device: str | torch.device = "cpu") -> Any:
        """Return a callable ``f(*inputs)`` equivalent to the original model."""
        ...


def list_runtimes() -> list[str]:
    return RUNTIMES.names()


def get_runtime(name: str) -> Runtime:
    return RUNTIMES.get(name).factory()


__all__ = ["RUNTIMES", "Runtime", "RuntimeEntry", "get_runtime", "list_runtimes",
    "OpenVINOSettings",
    "OrtSettings",
    "SETTINGS_CLASSES",
    "TorchSettings",
    "apply_torch_settings",
    "default_settings",
    "parse_settings",
    "settings_from_manifest",
    "thread_budget",
    "tuned_elsewhere",
    "with_settings",
    "write_settings",
    "MAX_BATCH_SIZE",
    "build_engine",
    "require_tensorrt",
]
