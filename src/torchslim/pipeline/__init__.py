"""The main job: measure the baseline, run candidate pipelines, keep the best within budget."""

from __future__ import annotations

from torchslim.pipeline._optimize import optimize

__all__ = ["optimize"]
