"""The main job: measure the baseline, run candidate pipelines, keep the best within budget.

    load_recipe(NAME | FILE | mapping)  -> LoadedRecipe   (validates every step up front)
    optimize(model, data, recipe, goal=Goal(...), run=RunOptions(...), measure=MeasureOptions(...))
                                        -> Report         (writes the run directory)
    select_best(candidates)             -> name | None    (fastest within budget, ties by size)
"""

from __future__ import annotations

from torchslim.core.step import StepContext, StepOutput
from torchslim.pipeline._optimize import optimize, write_html
from torchslim.pipeline._options import Goal, MeasureOptions, RunOptions
from torchslim.pipeline._recipe import (
    LoadedRecipe,
    Recipe,
    describe_step,
    list_recipes,
    load_recipe,
    read_recipe_source,
)
from torchslim.pipeline._select import select_best
from torchslim.pipeline._steps import STEP_TABLE, known_steps, resolve_step
from torchslim.pipeline._train import train_from_specs
from torchslim.report import totals_line  # lives with the report now (report.html shows it too)

__all__ = [
    "STEP_TABLE",
    "Goal",
    "MeasureOptions",
    "RunOptions",
    "LoadedRecipe",
    "Recipe",
    "StepContext",
    "StepOutput",
    "describe_step",
    "known_steps",
    "list_recipes",
    "load_recipe",
    "optimize",
    "resolve_step",
    "select_best",
    "write_html",
    "read_recipe_source",
    "train_from_specs",
    "totals_line",
]
