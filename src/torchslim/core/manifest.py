"""The manifest beside every artifact: its format, the runtime it runs on and the inputs it
takes, so ``torchslim.load`` can rebuild a callable with no other context."""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from torchslim._io import atomic_write_text
from torchslim.core.integrity import file_digests, verify_digests
from torchslim.core.manifest_check import check_manifest_fields
from torchslim.errors import ArtifactError

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
    sha256: dict[str, str] | None = None  # file name -> digest, filled by write_manifest

    def example_inputs(self, batch_size: int, device: str | torch.device = "cpu") -> tuple[torch.Tensor, ...]:
        return tuple(spec.example(batch_size, device) for spec in self.inputs)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        raw = json.loads(text)
        check_manifest_fields(raw)  # a wrong type or shape is named here, not as a crash in a runtime
        raw["inputs"] = [InputSpec(**i) for i in raw.get("inputs", [])]
        return cls(**raw)


def input_specs(example_inputs: tuple[torch.Tensor, ...], names: list[str] | None = None) -> list[InputSpec]:
    names = names or (["input"] if len(example_inputs) == 1 else [f"input_{i}" for i in range(len(example_inputs))])
    return [
        InputSpec(shape=list(t.shape), dtype=str(t.dtype).removeprefix("torch."), name=n)
        for t, n in zip(example_inputs, names, strict=True)
    ]


def manifest_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".json")


def write_manifest(path: str | Path, manifest: Manifest, side_files: list[str] = ()) -> None:
    """Write ``path``'s manifest with the SHA-256 of the artifact (and ``side_files``, named
    relative to its folder) as it is on disk now: call it after the artifact is written."""
    manifest.sha256 = file_digests(path, side_files)
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
    if manifest.sha256 is None:
        warnings.warn(f"{str(path)!r} was written before torchslim recorded digests: its bytes cannot be "
                      "verified. Re-create it to get a checked artifact.", stacklevel=2)
    else:
        verify_digests(path, manifest.sha256)
    return manifest
