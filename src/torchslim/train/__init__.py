"""Training: ``fit(model, data, TrainConfig(...))``.

Placeholder loop until the training engine lands; its signature is the contract the
compression techniques (QAT, distillation, fine-tuning) build on.
"""

from __future__ import annotations

from torchslim.train._simple import FitResult, TrainConfig, fit

__all__ = ["FitResult", "TrainConfig", "fit"]
