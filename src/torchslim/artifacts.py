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

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from torchslim._io import atomic_write, atomic_write_text
from torchslim.errors import ArtifactError, ExportError

FORMAT_VERSION = 1


@dataclass
class InputSpec:
    shape: list[int]  # an example shape; dim 0 is the batch, dynamic in every artifact
    dtype: str = "float32"
    name: str = "input"

    def example(self, batch_size: int, device: str | torch.device = "cpu") -> torch.Tensor:
        shape = [batch_size, *self.shape[1:]]
        dtype = getattr(torch, self.dtype)
        if dtype.is_floating_point:
            return torch.randn(shape, dtype=dtype, device=device)
        return torch.ones(shape, dtype=dtype, device=device)


@dataclass
class Manifest:
    format: str
    runtime: str
    inputs: list[InputSpec]
    task: str = "classification"
    steps: list[str] = field(default_factory=list)  # what produced it, e.g. "quantize(method=static)"
    extra: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def example_inputs(self, batch_size: int, device: str | torch.device = "cpu") -> tuple[torch.Tensor, ...]:
        return tuple(spec.example(batch_size, device) for spec in self.inputs)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        raw = json.loads(text)
        raw["inputs"] = [InputSpec(**i) for i in raw.get("inputs", [])]
        return cls(**raw)


def input_specs(example_inputs: tuple[torch.Tensor, ...], names: list[str] | None = None) -> list[InputSpec]:
    names = names or (["input"] if len(example_inputs) == 1 else [f"input_{i}" for i in range(len(example_inputs))])
    return [
        InputSpec(shape=list(t.shape), dtype=str(t.dtype).removeprefix("torch."), name=n)
        for t, n in zip(example_inputs, names, strict=True)
    ]


def artifact_files(path: str | Path) -> list[Path]:
    """The files that make up an artifact (without its manifest): an OpenVINO IR is its
    ``.xml`` and the ``.bin`` beside it, every other artifact one file."""
    path = Path(path)
    return [path, path.with_suffix(".bin")] if path.suffix == ".xml" else [path]


def artifact_size(path: str | Path) -> int:
    """Bytes on disk of an artifact's files (a missing companion file counts 0)."""
    return sum(f.stat().st_size for f in artifact_files(path) if f.exists())


def manifest_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".json")


def write_manifest(path: str | Path, manifest: Manifest) -> None:
    atomic_write_text(manifest_path(path), manifest.to_json())


def read_manifest(path: str | Path) -> Manifest:
    path = Path(path)
    mpath = manifest_path(path)
    if not path.exists():
        raise ArtifactError(f"Artifact {str(path)!r} does not exist.")
    if not mpath.exists():
        raise ArtifactError(
            f"Artifact {str(path)!r} has no manifest {mpath.name!r} beside it; torchslim writes one "
            "with every artifact. Re-create the artifact with torchslim, or keep the two files together."
        )
    try:
        manifest = Manifest.from_json(mpath.read_text())
    except (ValueError, TypeError) as e:
        raise ArtifactError(f"Manifest {str(mpath)!r} is corrupt ({e}).") from None
    if manifest.format_version > FORMAT_VERSION:
        raise ArtifactError(
            f"Artifact {str(path)!r} was written by a newer torchslim (format {manifest.format_version}); upgrade torchslim."
        )
    return manifest


def export_program(model: nn.Module, example_inputs: tuple[torch.Tensor, ...], *, dynamic_batch: bool = True):
    """``torch.export`` with a dynamic batch dimension on every input."""
    model.eval()
    dynamic_shapes = None
    if dynamic_batch:
        batch = torch.export.Dim("batch", min=1, max=4096)
        dynamic_shapes = tuple({0: batch} for _ in example_inputs)
    # Export with a batch of at least 2: a batch of 1 gets specialized to a constant.
    example_inputs = tuple(t if t.shape[0] > 1 else torch.cat([t, t]) for t in example_inputs)
    try:
        with torch.no_grad():
            return torch.export.export(model, example_inputs, dynamic_shapes=dynamic_shapes, strict=False)
    except Exception as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExportError(
            f"torch.export could not capture {type(model).__name__}: {first_line}. Models with "
            "data-dependent Python control flow or non-tensor outputs cannot be exported; "
            "rewrite that part with tensor ops or torch.cond."
        ) from None


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
    atomic_write(path, lambda p: torch.export.save(program, str(p)))
    write_manifest(
        path,
        Manifest("exported", runtime, input_specs(example_inputs, input_names), task, steps or [], extra or {}),
    )
    return path


def load(path: str | Path, *, runtime: str | None = None, device: str | torch.device = "cpu"):
    """A callable for any artifact torchslim writes, on the runtime recorded with it
    (or ``runtime``), taking the same inputs as the original model."""
    from torchslim.runtime import get_runtime

    manifest = read_manifest(path)
    return get_runtime(runtime or manifest.runtime).load(Path(path), manifest, device=device)
