"""Artifacts: the files torchslim writes, and ``load(path)`` for every one of them.

Every artifact ``X`` has a manifest ``X.json`` beside it recording its format, the runtime
it runs on, and the inputs it takes, so ``load`` can rebuild a callable with no other
context. ``size_bytes`` in reports is the artifact's files (``artifact_files``: the file
itself, plus an OpenVINO IR's ``.bin`` weights), without the manifest (a few hundred bytes
of JSON, the same for every variant).

Formats:
    exported   torch.export ExportedProgram (``.pt2``), runs on eager or compile
    aoti       AOTInductor package (``.pt2``)
    onnx       ONNX model (``.onnx``), runs on onnxruntime or tensorrt
    tslim      torchslim deep-compression container (``.tslim``)
    tensorrt   serialized TensorRT engine (``.engine``)
    openvino   OpenVINO IR: graph ``.xml`` (the artifact path) + weights ``.bin`` beside it
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from pydantic import ValidationError

from torchslim.core import export as core_export
from torchslim.core.files import atomic_write_buffered
from torchslim.core.log import say
from torchslim.core.manifest import (
    FORMAT_VERSION,
    InputSpec,
    Manifest,
    artifact_files,
    artifact_size,
    input_specs,
    manifest_path,
    read_manifest,
    write_manifest,
)
from torchslim.core.padding import SkipPadding, padding_extra
from torchslim.core.registry import WRITERS
from torchslim.errors import ConfigError
from torchslim.export import writer_for  # noqa: F401  (registers the exporters' writers)
from torchslim.runtime import (
    apply_torch_settings,
    get_runtime,
    parse_settings,
    settings_from_manifest,
    tuned_elsewhere,
    with_settings,
)


def export_program(model: nn.Module, example_inputs: tuple[torch.Tensor, ...]) -> torch.export.ExportedProgram:
    """``torch.export`` in eval mode with a dynamic batch (and sequence, for token inputs); see
    ``torchslim.core.export``."""
    model.eval()
    return core_export.export_program(model, example_inputs)


def _drop_stack_traces(program: torch.export.ExportedProgram) -> None:
    """Remove the Python stack trace recorded on every graph node: it holds the paths of the
    user's source files (nothing a deployed artifact should carry) and is 1-5% of the file.
    Module hierarchy and shapes, which loading and unflattening use, are kept."""
    for module in program.graph_module.modules():
        if isinstance(module, torch.fx.GraphModule):
            for node in module.graph.nodes:
                node.meta.pop("stack_trace", None)


def save_exported(
    model: nn.Module | torch.export.ExportedProgram,
    path: str | Path,
    example_inputs: tuple[torch.Tensor, ...],
    *,
    runtime: str = "eager",
    task: str = "classification",
    steps: list[str] | None = None,
    extra: dict[str, Any] | None = None,
    input_names: list[str] | None = None,
) -> Path:
    """Save a model as a ``.pt2`` ExportedProgram plus manifest; returns the artifact path."""
    path = Path(path)
    program = model if isinstance(model, torch.export.ExportedProgram) else export_program(model, example_inputs)
    _drop_stack_traces(program)
    atomic_write_buffered(path, lambda f: torch.export.save(program, f))  # see atomic_write_buffered: no abort on a full disk
    extra = dict(extra or {})
    extra["sequence_outputs"] = core_export.output_sequence_axes(program)
    # the model as given when it is one (a quantized module runs eagerly), else the program's module
    extra |= padding_extra(model if isinstance(model, nn.Module) else program.module(), example_inputs, input_names)
    specs = input_specs(example_inputs, input_names, core_export.dynamic_axes(program))
    write_manifest(path, Manifest("exported", runtime, specs, task, steps or [], extra))
    return path


__all__ = [
    "artifact_files",
    "artifact_size",
    "FORMAT_VERSION",
    "InputSpec",
    "Manifest",
    "export_program",
    "input_specs",
    "load",
    "manifest_path",
    "read_manifest",
    "save_exported",
    "save_for_runtime",
    "write_manifest",
]


def save_for_runtime(model: nn.Module, folder: str | Path, example_inputs: tuple[torch.Tensor, ...], runtime: str, *,
                     task: str = "classification", input_names: list[str] | None = None,
                     steps: list[str] | None = None) -> Path:
    """Write ``model`` as the artifact ``runtime`` runs, in ``folder``, with the writer
    registered for that runtime (``torchslim.core.registry.WRITERS``)."""
    writer = WRITERS.get(runtime)
    return writer(model, Path(folder), example_inputs, task=task, input_names=input_names, steps=steps)


def _exported_writer(runtime: str):
    def write(model, folder: Path, example_inputs, *, task, input_names, steps):
        return save_exported(model, folder / "model.pt2", example_inputs, runtime=runtime, task=task,
                             input_names=input_names, steps=steps)
    return write


for _runtime in ("eager", "compile"):
    WRITERS.register(_runtime, _exported_writer(_runtime))


def load(path: str | Path, *, runtime: str | None = None, device: str | torch.device = "cpu",
         precompile: bool = False, settings: Any = None):
    """A callable for any artifact torchslim writes, on the runtime recorded with it
    (or ``runtime``), taking the same inputs as the original model. ``precompile``: a runtime
    that compiles per shape (``compile``) compiles its sequence-length buckets now (batch 1)
    rather than on the first request of each. ``settings`` (an ``OrtSettings``,
    ``OpenVINOSettings`` or ``TorchSettings``, or a mapping of their fields) replaces the
    runtime settings recorded in the manifest (``torchslim.runtime._settings``)."""
    manifest = read_manifest(path)
    run_on = runtime or manifest.runtime
    if settings is not None:
        try:
            manifest = with_settings(manifest, parse_settings(run_on, settings))
        except (ValueError, ValidationError) as e:
            raise ConfigError(f"runtime settings for {run_on!r}: {e}") from None
    chosen = settings_from_manifest(manifest, run_on)
    if settings is None and (notice := tuned_elsewhere(manifest, chosen)):
        say(notice)
    model = get_runtime(run_on).load(Path(path), manifest, device=device)
    model = apply_torch_settings(model, chosen)
    if precompile and hasattr(model, "precompile"):
        model.precompile()
    padding = manifest.extra.get("padding")
    if isinstance(padding, dict) and padding.get("skip") and isinstance(padding.get("input_index"), int):
        model = SkipPadding(model, padding["input_index"])  # trailing padding is not computed (core.padding)
    return model
