"""``--device auto|cpu|cuda``: auto picks CUDA when present (seed 000's gpu_acceleration)."""

from __future__ import annotations

import torch

from torchslim.errors import ConfigError, UnsupportedError


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    if isinstance(name, torch.device):
        return name
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UnsupportedError(f"--device {name}: CUDA is not available on this machine. Use --device cpu or auto.")
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise ConfigError(f"Unknown device {name!r}. Use auto, cpu or cuda (cuda:N for a specific GPU).")
