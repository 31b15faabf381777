"""Recipes (SPEC.md section 4): YAML -> validated, ordered candidate pipelines.

A recipe is checked completely when it is loaded, before any work: its shape by pydantic
(unknown keys and bad values name their path, e.g. ``candidates[2].runtime``) and every
step's options by the technique's own ``validate_step`` (errors prefixed with the step's
path, e.g. ``candidates[2].steps[0].prune``). A typo costs a second, not a half-finished run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from torchslim.core.registry import RUNTIMES
from torchslim.errors import ConfigError, TorchslimError
from torchslim.pipeline._steps import Step, resolve_step
from torchslim.runtime import SETTINGS_CLASSES, parse_settings


class CandidateSpec(BaseModel):
    """One candidate pipeline: steps run in order, each receiving the previous one's model."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=80,
                      description="unique; also the folder name under candidates/")
    steps: list[dict[str, Any] | str] = Field(default_factory=list,
                                              description="one-key mappings {technique: options}; [] = the baseline on `runtime`")
    runtime: str | None = Field(None, description="measure on this runtime (default: what the last step says, else eager)")
    devices: list[Literal["cpu", "cuda"]] | None = Field(None, description="run only on these device types")
    description: str | None = None
    runtime_settings: dict[str, Any] | None = Field(
        None, description="fixed settings for `runtime` (threads, spinning, hint, ...): no tuning for this candidate")

    @model_validator(mode="after")
    def _settings_fit_runtime(self) -> CandidateSpec:
        if self.runtime_settings is not None:
            self.runtime_settings = check_runtime_settings(self.runtime, self.runtime_settings)
        return self

    @field_validator("runtime")
    @classmethod
    def _known_runtime(cls, runtime: str | None) -> str | None:
        if runtime is not None and runtime not in RUNTIMES:
            raise ValueError(f"unknown runtime {runtime!r}; known runtimes: {', '.join(RUNTIMES.names())}")
        return runtime

    @field_validator("steps")
    @classmethod
    def _one_key_each(cls, steps: list) -> list[dict[str, Any]]:
        out = []
        for i, step in enumerate(steps):
            if isinstance(step, str):
                step = {step: None}
            if len(step) != 1:
                raise ValueError(f"step {i} has keys {sorted(step)}; each step is a one-key mapping such as "
                                 "{quantize: {method: dynamic}}")
            out.append(step)
        return out


class SensitivitySpec(BaseModel):
    """Per-layer sensitivity: prune one layer at a time, measure the drop on the validation split."""

    model_config = ConfigDict(extra="forbid")
    ratio: float = Field(0.5, gt=0.0, lt=1.0, description="fraction of one layer's weights zeroed (L1)")
    max_layers: int = Field(64, ge=1, le=1024, description="largest layers first; the rest are not probed")


class RefineSpec(BaseModel):
    """Second stage: variants of the best candidate's family (finer ratios, sensitive layers kept)."""

    model_config = ConfigDict(extra="forbid")
    ratio_deltas: list[float] = Field(default_factory=lambda: [-0.1, 0.1], description="added to prune ratio / factorize rank_ratio")
    skip_sensitive: int = Field(0, ge=0, le=16, description="keep the N most sensitive layers out of prune/quantize")
    max_candidates: int = Field(3, ge=1, le=16)

    @field_validator("ratio_deltas")
    @classmethod
    def _deltas(cls, deltas: list[float]) -> list[float]:
        for d in deltas:
            if not -1.0 < d < 1.0 or d == 0:
                raise ValueError(f"each delta must be non-zero and between -1 and 1, got {d}")
        return deltas


class SearchSpec(BaseModel):
    """Search to the edge of the budget: a family out of budget at the recipe's strength (or, for
    the size objective, well inside it) is retried at other strengths by bisection."""

    model_config = ConfigDict(extra="forbid")
    max_tries: int = Field(4, ge=1, le=16, description="tries per family, each one more candidate")
    max_families: int = Field(3, ge=1, le=16, description="families searched, the most promising first")
    inside: float = Field(0.5, ge=0.0, lt=1.0,
                          description="size objective: a drop at most this share of the budget is 'well inside'")
    allocate: bool = Field(True, description="magnitude pruning: per-layer ratios from the sensitivity pass")


class TuningSpec(BaseModel):
    """Tune each candidate's runtime settings by measurement (``torchslim.pipeline._tune``)."""

    model_config = ConfigDict(extra="forbid")
    max_tries: int = Field(4, ge=1, le=16, description="settings tried per candidate, the default first")
    max_seconds: float = Field(20.0, gt=0, le=600, description="wall-time bound of one candidate's tuning")
    min_gain: float = Field(0.03, ge=0, lt=1, description="a try replaces the default only when this much faster")


class RunoffSpec(BaseModel):
    """Before the pick, time the objective's close contenders again side by side
    (``torchslim.pipeline._runoff``): measured one after another, they were timed in different
    moments of a machine that drifts."""

    model_config = ConfigDict(extra="forbid")
    max_candidates: int = Field(3, ge=2, le=8, description="contenders timed together, the leader first")
    margin: float = Field(0.3, gt=0, le=2, description="a contender is within this fraction of the leader")
    max_seconds: float = Field(20.0, gt=0, le=600, description="wall-time bound of loading and timing them")


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str = ""
    objective: Literal["latency", "throughput", "size", "balanced"] | None = Field(
        None, description="what best means for this recipe; --objective overrides it")
    candidates: list[CandidateSpec] = Field(min_length=1)
    sensitivity: SensitivitySpec | None = None
    refine: RefineSpec | None = None
    search: SearchSpec | None = None
    tuning: TuningSpec | None = Field(None, description="tune each candidate's runtime settings (absent: defaults)")
    runoff: RunoffSpec | None = Field(None, description="re-time the close contenders side by side before the pick")
    executor: Literal["local", "ray"] | None = Field(
        None, description="where candidates run (docs/cluster.md); --executor overrides it")

    @model_validator(mode="after")
    def _unique_names(self) -> Recipe:
        seen: set[str] = set()
        for c in self.candidates:
            if c.name in seen:
                raise ValueError(f"candidate name {c.name!r} is used twice; names must be unique")
            seen.add(c.name)
        return self


def check_runtime_settings(runtime: str | None, options: dict[str, Any]) -> dict[str, Any]:
    """``runtime_settings`` as ``runtime``'s typed settings (``torchslim.runtime._settings``);
    a ValueError naming the offending field, e.g. ``runtime_settings.intra_op_thread``."""
    if runtime is None:
        raise ValueError("runtime_settings needs the candidate's `runtime:` (the settings are that runtime's; "
                         f"runtimes with settings: {', '.join(SETTINGS_CLASSES)})")
    try:
        return parse_settings(runtime, options).model_dump()
    except ValidationError as e:
        parts = [f"runtime_settings.{format_loc(tuple(x.get('loc', ())))}: {x.get('msg')}" for x in e.errors()]
        raise ValueError("; ".join(parts)) from None


@dataclass
class PlannedStep:
    name: str
    options: Any  # as the user wrote it (for display and for refine's variants)
    config: Any  # what the technique's validate_step returned
    step: Step

    def describe(self) -> str:
        return describe_step(self.name, self.options)


@dataclass
class PlannedCandidate:
    name: str
    steps: list[PlannedStep]
    runtime: str | None = None
    devices: list[str] | None = None
    refined_from: str | None = None
    runtime_settings: dict[str, Any] | None = None  # fixed by the recipe (validated for ``runtime``)

    def step_strings(self) -> list[str]:
        return [s.describe() for s in self.steps]


@dataclass
class LoadedRecipe:
    name: str  # a built-in name, or the file path it came from
    spec: Recipe
    candidates: list[PlannedCandidate] = field(default_factory=list)
    # The table its steps were resolved in (None: the registered steps). The search and refine
    # stages plan new steps from it, so a recipe loaded against test fakes stays on them.
    step_table: Mapping[str, Any] | None = None


def describe_step(name: str, options: Any) -> str:
    """``prune(method=channel, ratio=0.5)``; ``encode(huffman)``; ``distill()``."""
    if options is None:
        return f"{name}()"
    if isinstance(options, Mapping):
        return f"{name}(" + ", ".join(f"{k}={_short(v)}" for k, v in options.items()) + ")"
    return f"{name}({_short(options)})"


def _short(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    return str(value)


def format_loc(loc: tuple) -> str:
    """('candidates', 2, 'steps', 0) -> 'candidates[2].steps[0]'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _pydantic_error(err: ValidationError, where: str) -> ConfigError:
    parts = [f"{format_loc(tuple(e.get('loc', ())))}: {e.get('msg')}" for e in err.errors()]
    return ConfigError(f"Invalid recipe {where}: " + "; ".join(parts) + ".")


def builtin_dir():
    return resources.files("torchslim").joinpath("recipes")


def list_recipes() -> list[str]:
    """Names of the built-in recipes (``default``, ``quick``, ...)."""
    names = [p.name[: -len(".yaml")] for p in builtin_dir().iterdir() if p.name.endswith(".yaml")]
    return sorted(names, key=lambda n: (n != "default", n))


def read_recipe_source(recipe: str | Path) -> tuple[str, str]:
    """(name, YAML text) for a built-in NAME or a FILE path."""
    text_name = str(recipe)
    path = Path(text_name)
    if path.suffix in (".yaml", ".yml") or "/" in text_name or path.is_file():
        if not path.is_file():
            raise ConfigError(f"Recipe file {text_name!r} does not exist. Give a YAML file or a built-in name "
                              f"({', '.join(list_recipes())}).")
        try:
            return text_name, path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"Cannot read recipe file {text_name!r} ({e}).") from None
    resource = builtin_dir().joinpath(f"{text_name}.yaml")
    if not resource.is_file():
        raise ConfigError(f"Unknown recipe {text_name!r}. Built-in recipes: {', '.join(list_recipes())}; "
                          "or give the path of a YAML recipe file.")
    return text_name, resource.read_text(encoding="utf-8")


def load_recipe(recipe: str | Path | Mapping = "default", *, step_table: Mapping[str, Any] | None = None) -> LoadedRecipe:
    """Load a built-in NAME, a YAML FILE, or an already-parsed mapping; validate every step.

    ``step_table`` replaces the registered steps (a test seam: the tests run recipes of fake
    steps); ``optimize`` takes the loaded recipe as its ``recipe`` and keeps to that table.
    """
    if isinstance(recipe, Mapping):
        name, raw = "(inline)", dict(recipe)
    else:
        name, text = read_recipe_source(recipe)
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise ConfigError(f"Recipe {name!r} is not valid YAML{where}: {getattr(e, 'problem', e)}.") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"Recipe {name!r} must be a mapping with a 'candidates' list, got {type(raw).__name__}.")
    try:
        spec = Recipe.model_validate(raw)
    except ValidationError as e:
        raise _pydantic_error(e, repr(name)) from None
    loaded = LoadedRecipe(name=name, spec=spec, step_table=step_table)
    for i, cand in enumerate(spec.candidates):
        steps = [plan_step(step_name, options, f"candidates[{i}].steps[{j}].{step_name}", name, step_table)
                 for j, step in enumerate(cand.steps) for step_name, options in step.items()]
        loaded.candidates.append(PlannedCandidate(cand.name, steps, cand.runtime, cand.devices,
                                                  runtime_settings=cand.runtime_settings))
    return loaded


def plan_step(step_name: str, options: Any, path: str, recipe_name: str,
              step_table: Mapping[str, Any] | None) -> PlannedStep:
    """Resolve and validate one step; errors name ``path`` inside the recipe."""
    try:
        step = resolve_step(step_name, step_table)
    except ConfigError as e:
        raise ConfigError(f"Invalid recipe {recipe_name!r}: {path}: {e.message}") from None
    try:
        config = step.validate(options)
    except ValidationError as e:
        parts = [f"{path}.{format_loc(tuple(x.get('loc', ())))}: {x.get('msg')}" for x in e.errors()]
        raise ConfigError(f"Invalid recipe {recipe_name!r}: " + "; ".join(parts) + ".") from None
    except TorchslimError as e:
        raise ConfigError(f"Invalid recipe {recipe_name!r}: {path}: {e.message}") from None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"Invalid recipe {recipe_name!r}: {path}: {e}") from None
    return PlannedStep(step_name, options, config, step)
