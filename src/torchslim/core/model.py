"""What a resolved MODEL spec is (``ModelHandle``) and loading trained weights into a module
without unpickling code."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load a state_dict (``.pt``/``.pth`` with ``weights_only=True``, or ``.safetensors``)."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"Weights file {str(path)!r} does not exist.")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ArtifactError(
            f"Cannot read weights from {str(path)!r} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). "
            "Give a state_dict saved with torch.save(model.state_dict(), ...) or safetensors; "
            "pickled whole models are refused for safety."
        ) from None
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
