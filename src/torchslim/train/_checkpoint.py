"""Resumable training checkpoints.

One file, ``<out>/checkpoint.pt``, holds everything needed to continue as if never stopped:
model, optimizer, scheduler and grad-scaler state, every RNG state (torch CPU/CUDA, Python,
NumPy), the data position (epoch, micro-batches consumed in it, optimizer steps) and the best
weights so far. It is written with ``atomic_write`` (temp file, fsync, rename), so a kill -9
at any moment leaves either the previous complete checkpoint or the new one, never half a
file. Everything is stored as tensors and plain Python types so it loads with
``torch.load(weights_only=True)``: no pickled code runs on resume.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from torchslim.core.files import atomic_write
from torchslim.core.model import read_safely
from torchslim.errors import ArtifactError, TrainingError
from torchslim.train._state import Progress

CHECKPOINT_NAME = "checkpoint.pt"
BEST_WEIGHTS_NAME = "best.safetensors"
_FORMAT = "torchslim-train-checkpoint"
_VERSION = 1


@dataclass
class TrainCheckpoint:
    """What ``checkpoint.pt`` holds, typed. ``to_checkpoint`` flattens it to the stored dict
    (the keys of format version 1, unchanged) and ``from_checkpoint`` reads one back."""

    model_fingerprint: str
    model_class: str
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    scaler: dict[str, Any]
    rng: dict[str, Any]
    config: dict[str, Any]
    total_steps: int  # the run's planned optimizer steps (a changed --epochs stretches the LR schedule)
    train_samples: int  # the training split's size (resuming on other data is refused)
    step: int  # optimizer steps done
    history: list[dict[str, Any]] = field(default_factory=list)
    progress: Progress = field(default_factory=Progress)

    _PROGRESS = ("epoch", "micro_batch", "best_val_accuracy", "best_model", "bad_epochs", "epoch_loss", "epoch_steps")

    def to_checkpoint(self) -> dict[str, Any]:
        flat = {name: getattr(self, name) for name in self.__dataclass_fields__ if name != "progress"}
        return flat | {name: getattr(self.progress, name) for name in self._PROGRESS}

    @classmethod
    def from_checkpoint(cls, state: dict[str, Any]) -> TrainCheckpoint:
        fields = {name: state[name] for name in cls.__dataclass_fields__ if name != "progress"}
        return cls(**fields, progress=Progress(**{name: state[name] for name in cls._PROGRESS}))


def model_fingerprint(model: nn.Module) -> str:
    """A digest of the state_dict's names and shapes: same architecture <=> same fingerprint."""
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(f"{name}:{tuple(tensor.shape)};".encode())
    return h.hexdigest()[:16]


def rng_state() -> dict[str, Any]:
    import numpy as np

    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype("int64")), "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np

    torch.set_rng_state(state["torch"])
    random.setstate(_as_tuple(state["python"]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype("uint32"), n["pos"], n["has_gauss"], n["cached"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(value: Any) -> Any:
    # random.setstate needs tuples all the way down; a loaded checkpoint may hold lists
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


def cpu_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def save_checkpoint(path: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` (plus a format tag) atomically to ``path``."""
    payload = {"format": _FORMAT, "version": _VERSION, **state}
    # A run killed mid-write leaves its temp file behind (the real file is intact); sweep them.
    for stale in Path(path).parent.glob(f".{Path(path).stem}.*.tmp{Path(path).suffix}"):
        stale.unlink(missing_ok=True)
    return atomic_write(path, lambda p: torch.save(payload, p))


def save_best_weights(path: Path, state_dict: dict[str, torch.Tensor]) -> Path:
    from safetensors.torch import save_file

    tensors = {k: v.contiguous() for k, v in state_dict.items()}
    return atomic_write(path, lambda p: save_file(tensors, str(p)))


def load_checkpoint(path: Path, model: nn.Module) -> dict[str, Any]:
    """Read a checkpoint for ``model``; raises a clear error when missing, corrupt or foreign."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise TrainingError(
            f"Cannot resume: no checkpoint at {str(path)!r}. Run once without --resume (with the same "
            "--out) to create one, or point --out at the directory of the run to continue."
        )
    state = read_safely(path, f"Checkpoint {str(path)!r} cannot be read",
                        "It may be corrupt or not a torchslim training checkpoint; delete it to start over.")
    if not isinstance(state, dict) or state.get("format") != _FORMAT:
        raise ArtifactError(f"{str(path)!r} is not a torchslim training checkpoint.")
    if state.get("version", 0) > _VERSION:
        raise ArtifactError(f"Checkpoint {str(path)!r} was written by a newer torchslim (version {state['version']}); upgrade torchslim.")
    expected = model_fingerprint(model)
    if state.get("model_fingerprint") != expected:
        raise TrainingError(
            f"Checkpoint {str(path)!r} was written for a different model ({state.get('model_class')}, "
            f"fingerprint {state.get('model_fingerprint')}) than the one being trained "
            f"({type(model).__name__}, fingerprint {expected}): parameter names or shapes differ. "
            "Resume with the same --model, or use a fresh --out directory."
        )
    return state
