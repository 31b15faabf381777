"""The manifest beside every artifact: its format, the runtime it runs on and the inputs it
takes, so ``torchslim.load`` can rebuild a callable with no other context."""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from torchslim.core.export import DynamicAxes, is_token_input, sequence_buckets
from torchslim.core.files import atomic_write_text
from torchslim.core.integrity import file_digests, verify_digests
from torchslim.core.manifest_check import check_manifest_fields
from torchslim.errors import ArtifactError

# 2: manifests record sha256 digests, dynamic axes and sequence buckets (format 1 ones still load).
FORMAT_VERSION = 2


@dataclass
class InputSpec:
    shape: list[int]  # an example shape; dim 0 is the batch
    dtype: str = "float32"
    name: str = "input"
    # Axes that take any size in [min, max] (keys are axis numbers as strings, JSON's only
    # key type), e.g. {"0": [1, 4096], "1": [1, 512]} for token ids. None: a manifest written
    # before torchslim recorded it (the batch was dynamic, nothing else is known).
    dynamic: dict[str, list[int]] | None = None
    # The sequence lengths a runtime that compiles per shape (``compile``) pads a token input
    # up to, shortest first; None for inputs without a dynamic sequence.
    buckets: list[int] | None = None

    def example(self, batch_size: int, device: str | torch.device = "cpu") -> torch.Tensor:
        shape = [batch_size, *self.shape[1:]]
        dtype = getattr(torch, self.dtype)
        if dtype.is_floating_point:
            return torch.randn(shape, dtype=dtype, device=device)
        return torch.ones(shape, dtype=dtype, device=device)

    def accepted(self) -> str:
        """The shapes this input takes, e.g. ``int64[1..4096, 1..512]``."""
        dims = []
        for axis, size in enumerate(self.shape):
            bounds = (self.dynamic or {}).get(str(axis)) or ([1, None] if axis == 0 and self.dynamic is None else None)
            dims.append(f"{bounds[0]}..{bounds[1] or 'N'}" if bounds else str(size))
        return f"{self.dtype}[{', '.join(dims)}]"

    def accepts(self, t: torch.Tensor) -> bool:
        if t.dim() != len(self.shape):
            return False
        for axis, (size, expected) in enumerate(zip(t.shape, self.shape, strict=True)):
            bounds = (self.dynamic or {}).get(str(axis))
            if bounds is not None:
                if not bounds[0] <= size <= bounds[1]:
                    return False
            elif not (axis == 0 and self.dynamic is None) and size != expected:
                return False
        return True


@dataclass
class Manifest:
    format: str
    runtime: str
    inputs: list[InputSpec]
    task: str = "classification"
    steps: list[str] = field(default_factory=list)  # what produced it, e.g. "quantize(method=static)"
    extra: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    sha256: dict[str, str] | None = None  # file name -> digest, filled by write_manifest

    def example_inputs(self, batch_size: int, device: str | torch.device = "cpu") -> tuple[torch.Tensor, ...]:
        return tuple(spec.example(batch_size, device) for spec in self.inputs)

    def check_inputs(self, inputs: tuple, path: str | Path = "this artifact") -> None:
        """Raise ArtifactError naming the accepted shapes unless ``inputs`` fit the manifest
        (checked before the call: a program's own guard failure is an internal assertion)."""
        tensors = [t for t in inputs if isinstance(t, torch.Tensor)]
        if len(tensors) == len(inputs) == len(self.inputs) and all(
            spec.accepts(t) for spec, t in zip(self.inputs, tensors, strict=True)
        ):
            return
        got = ", ".join(f"{str(t.dtype).removeprefix('torch.')}{list(t.shape)}" if isinstance(t, torch.Tensor)
                        else type(t).__name__ for t in inputs)
        accepted = ", ".join(f"{spec.name}: {spec.accepted()}" for spec in self.inputs)
        raise ArtifactError(f"{str(path)!r} cannot take inputs ({got}); it accepts ({accepted}), where a..b is any "
                            "size from a to b. Pad or truncate token inputs to at most the longest length, or split "
                            "the batch.")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        raw = json.loads(text)
        check_manifest_fields(raw)  # a wrong type or shape is named here, not as a crash in a runtime
        raw["inputs"] = [InputSpec(**i) for i in raw.get("inputs", [])]
        return cls(**raw)


def input_specs(example_inputs: tuple[torch.Tensor, ...], names: list[str] | None = None,
                dynamic: list[DynamicAxes] | None = None) -> list[InputSpec]:
    """One InputSpec per input; ``dynamic`` (from ``torchslim.core.export.dynamic_axes``) says
    which axes take any size, and gives token inputs their compile buckets."""
    names = names or (["input"] if len(example_inputs) == 1 else [f"input_{i}" for i in range(len(example_inputs))])
    specs = []
    for index, (t, n) in enumerate(zip(example_inputs, names, strict=True)):
        axes = dynamic[index] if dynamic is not None else None
        spec = InputSpec(shape=list(t.shape), dtype=str(t.dtype).removeprefix("torch."), name=n)
        if axes is not None:
            spec.dynamic = {str(axis): [low, high] for axis, (low, high) in sorted(axes.items())}
            if is_token_input(t) and 1 in axes:
                spec.buckets = sequence_buckets(axes[1][1])
        specs.append(spec)
    return specs


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


def write_manifest(path: str | Path, manifest: Manifest, side_files: list[str] = ()) -> None:
    """Write ``path``'s manifest with the SHA-256 of the artifact (and ``side_files``, named
    relative to its folder) as it is on disk now: call it after the artifact is written."""
    side_files = list(side_files) or [f.name for f in artifact_files(path)[1:]]
    manifest.sha256 = file_digests(path, side_files)
    atomic_write_text(manifest_path(path), manifest.to_json())


def _declared_version(text: str) -> int:
    try:
        version = json.loads(text).get("format_version", 1)
    except (ValueError, AttributeError):
        return 1  # the strict parse names what is wrong
    return version if isinstance(version, int) and not isinstance(version, bool) else 1


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
    text = mpath.read_text()
    version = _declared_version(text)
    if version > FORMAT_VERSION:  # before the strict parse: a newer format may have fields we don't know
        raise ArtifactError(
            f"Artifact {str(path)!r} was written by a newer torchslim (format {version}, this one reads up to "
            f"{FORMAT_VERSION}); upgrade torchslim."
        )
    try:
        manifest = Manifest.from_json(text)
    except (ValueError, TypeError) as e:
        raise ArtifactError(f"Manifest {str(mpath)!r} is corrupt ({e}).") from None
    if manifest.sha256 is None:
        warnings.warn(f"{str(path)!r} was written before torchslim recorded digests: its bytes cannot be "
                      "verified. Re-create it to get a checked artifact.", stacklevel=2)
    else:
        verify_digests(path, manifest.sha256)
    return manifest
