"""The contract between the search and the techniques.

Every technique package that can be a recipe step exposes two functions:

    validate_step(options: dict | str | None) -> config   # pydantic model; raises ConfigError
                                                           # naming the bad field's path
    run_step(model: nn.Module, config, ctx: StepContext) -> StepOutput

``validate_step`` runs when a recipe is loaded (before any work), ``run_step`` when the
candidate runs. Steps receive the previous step's model; a step never mutates the
teacher or the caller's model (it works on a copy when it changes weights in place).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from torchslim.core.changes import LayerChange


@dataclass
class StepContext:
    data: Any  # a torchslim.data.DataBundle; train split for any training/calibration; test split is never touched
    device: torch.device
    teacher: nn.Module  # the unoptimized model (distillation's default teacher), read-only
    work_dir: Path  # where this candidate may write files (its artifact goes here too)
    example_inputs: tuple[torch.Tensor, ...]  # a real batch (size 2), on ``device``
    seed: int = 0
    log: Callable[[str], None] = print
    input_names: list[str] | None = None  # e.g. ["input_ids", "attention_mask"] for hf models
    max_accuracy_drop: float | None = None  # the recipe's budget in points, when a search runs the step


@dataclass
class StepOutput:
    model: nn.Module  # the model after this step (the next step's input)
    runtime: str | None = None  # the runtime it should be measured on, when not eager
    artifact: Path | None = None  # set when the step wrote the final artifact itself (.tslim, .onnx)
    notes: list[str] = field(default_factory=list)  # honest remarks for the report
    # Structured facts the report keeps as fields, e.g. {"fallback": {...}} (the layers kept in float).
    facts: dict[str, Any] = field(default_factory=dict)
    # What the step did to layers that comparing the model before and after cannot see (the
    # search adds that comparison itself, see core.changes): e.g. the layers an exported
    # artifact keeps in float. Plug-ins may leave it empty.
    changes: list[LayerChange] = field(default_factory=list)
