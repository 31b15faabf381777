"""torchslim: make trained PyTorch models smaller and faster within an accuracy budget."""

from __future__ import annotations

__version__ = "0.1.0"

from torchslim.artifacts import load
from torchslim.bench import Metrics, benchmark
from torchslim.errors import (
    ArtifactError,
    ConfigError,
    DataError,
    ExportError,
    SpecError,
    TorchslimError,
    TrainingError,
    UnsupportedError,
)
from torchslim.pipeline import optimize
from torchslim.train import TrainConfig, fit
from torchslim.zoo import create_model, list_models

__all__ = [
    "ArtifactError",
    "ConfigError",
    "DataError",
    "ExportError",
    "Metrics",
    "SpecError",
    "TorchslimError",
    "TrainConfig",
    "TrainingError",
    "UnsupportedError",
    "__version__",
    "benchmark",
    "create_model",
    "fit",
    "list_models",
    "load",
    "optimize",
]
