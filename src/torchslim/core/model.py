"""What a resolved MODEL spec is (``ModelHandle``) and loading trained weights into a module
without unpickling code."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from torchslim.errors import ArtifactError


@dataclass
class ModelHandle:
    model: nn.Module
    spec: str
    trained_now: bool = False  # trained in this call (no cached or given weights)
    cached_weights: Path | None = None
    hf: object | None = None  # the Hugging Face wrapper info (torchslim.hf.HFInfo), for hf: models


def read_safely(path: Path, problem: str, advice: str) -> Any:
    """What ``path`` holds, read on CPU without running pickled code: a ``.safetensors`` file, or
    ``torch.load(weights_only=True)``. Any failure is an ArtifactError "``problem`` (the error's
    type and first line). ``advice``" (weights the user gives, checkpoints the trainer wrote)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        first = str(e).splitlines()[0] if str(e) else ""
        raise ArtifactError(f"{problem} ({type(e).__name__}: {first}). {advice}") from None


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load a state_dict (``.pt``/``.pth`` with ``weights_only=True``, or ``.safetensors``)."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"Weights file {str(path)!r} does not exist.")
    state = read_safely(path, f"Cannot read weights from {str(path)!r}",
                        "Give a state_dict saved with torch.save(model.state_dict(), ...) or safetensors; "
                        "pickled whole models are refused for safety.")
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ArtifactError(f"{str(path)!r} does not hold a state_dict (a mapping of names to tensors).")
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        detail = str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else str(e)
        raise ArtifactError(
            f"Weights in {str(path)!r} do not fit the model ({detail}). Were they saved from a different architecture?"
        ) from None
    if result.missing_keys or result.unexpected_keys:
        raise ArtifactError(
            f"Weights in {str(path)!r} do not fit the model: missing {result.missing_keys[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}. Were they saved from a different architecture?"
        )
