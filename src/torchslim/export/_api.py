"""The ``export`` verb: ``export(model, out, inputs, config)``, dispatched through the formats registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from torchslim.core.registry import WRITERS
from torchslim.errors import ArtifactError
from torchslim.export._config import ExportConfig, parse_export_config
from torchslim.export._formats import (
    FORMATS,
    ArtifactInfo,
    ExportFormat,
    output_path,
    resolve_format,
)


def export(
    model: nn.Module,
    out: str | Path,
    inputs: tuple[torch.Tensor, ...] | torch.Tensor,
    config: ExportConfig | dict[str, Any] | str | None = None,
    *,
    data: Any = None,
    info: ArtifactInfo | None = None,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Write ``model`` as a deployable artifact + manifest; returns the artifact path.

    ``out`` is a file path (its suffix must fit the format) or a folder (``model.onnx`` etc.
    inside it); ``inputs`` a real batch of the model's positional inputs. ``config`` is a
    format's config (``OnnxStaticInt8Config(fallback="auto")``), the same options as a mapping
    (``{"format": "openvino", "quantize": "int8"}``, the recipe step's spelling) or a format
    name; default fp32 ONNX. ``data`` calibrates the int8 variants: a DataBundle (its train
    split; fallback measures on its validation split) or an iterable of input tuples. ``info``
    is what the manifest records beside the file (task, input names, step history; the task
    defaults to ``data``'s).
    """
    config = parse_export_config(config, "export config")
    example = inputs if isinstance(inputs, tuple) else tuple(inputs) if isinstance(inputs, list) else (inputs,)
    if info is None:
        info = ArtifactInfo(task=getattr(data, "task", "classification"))
    if not info.steps:
        info = replace(info, steps=[config.describe()])
    entry = FORMATS.get(config.format)
    path = output_path(out, config.format)
    return entry.write(model, path, example, config, data=data, info=info, log=log or (lambda _m: None))


def quantize_onnx(artifact: str | Path, out: str | Path, config: ExportConfig | dict[str, Any] | str, *,
                  data: Any = None, inputs: tuple[torch.Tensor, ...] | None = None,
                  log: Callable[[str], None] | None = None) -> Path:
    """ORT int8 quantization of an fp32 ONNX artifact (``OnnxDynamicInt8Config`` or
    ``OnnxStaticInt8Config``, calibrated on ``data``); see ``torchslim.export._onnx.quantize_onnx``."""
    from torchslim.export._onnx import quantize_onnx as run

    return run(artifact, out, config, data=data, inputs=inputs, log=log or (lambda _m: None))


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


def register_format(entry: ExportFormat, *, replace: bool = False) -> ExportFormat:
    """Make ``entry`` an export format: ``export(..., config)``, the recipe step
    ``export: {format: NAME}`` and ``torchslim export --format NAME`` take it, and the search
    can write its runtime's artifacts (``WRITERS``) unless another writer already does."""
    FORMATS.register(entry.name, entry, replace=replace)
    _register_writer(entry.runtime)
    return entry


def unregister_format(name: str) -> None:
    if name in FORMATS:
        runtime = FORMATS.get(name).runtime
        FORMATS.unregister(name)
        if not any(FORMATS.get(n).runtime == runtime for n in FORMATS) and getattr(WRITERS.get(runtime), "by_export",
                                                                                      False):
            WRITERS.unregister(runtime)


def writer_for(runtime: str):
    """The artifact writer for ``runtime`` (its format's exporter, default options), as the
    search calls it (``torchslim.artifacts.save_for_runtime``)."""
    def write(model, folder: Path, example_inputs, *, task, input_names, steps=None):
        return export(model, folder, example_inputs, resolve_format(None, runtime),
                      info=ArtifactInfo(task, input_names, steps))
    write.by_export = True  # type: ignore[attr-defined]  (unregister_format removes only its own)
    return write


def _register_writer(runtime: str) -> None:
    if runtime not in WRITERS:
        WRITERS.register(runtime, writer_for(runtime))


for _name in FORMATS:  # the built-in formats (``_config.py``)
    _register_writer(FORMATS.get(_name).runtime)
