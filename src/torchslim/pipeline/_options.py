"""The option groups of ``torchslim.optimize``: what "best" means, how the run goes, how it measures.

    optimize(model, data, recipe="default",
             goal=Goal(objective="size", max_accuracy_drop=0.5, max_latency_ms=2.0),
             run=RunOptions(out="runs/cnn", seed=1, device="cpu"),
             measure=MeasureOptions(batch_sizes=(1, 8)))

Each option is declared here once, with its doc; the CLI (``torchslim optimize --objective ...``)
builds these groups from its flags, so a bad value reads the same from both: a ``ConfigError``
naming the flag, the value and the field (``--seed -1: must be ... (RunOptions.seed)``), exit 2
on the command line. Groups are frozen: derive a variant with ``goal.model_copy(update={...})``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from torchslim.bench import measure
from torchslim.errors import ConfigError

MAX_BATCH_SIZE = 65536  # a timing batch beyond this is a typo, not a workload
Objective = Literal["latency", "throughput", "size", "balanced"]


class _Group(BaseModel):
    """Frozen, no unknown keys, and a ``ConfigError`` (not pydantic's ValidationError) on a bad value."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as e:
            raise _config_error(type(self), e) from None

    @classmethod
    def of(cls, given: Any, name: str):
        """``given`` as this group: the group itself, a mapping of its fields, or None (the defaults)."""
        if given is None:
            return cls()
        if isinstance(given, cls):
            return given
        if isinstance(given, dict):
            return cls(**given)
        raise ConfigError(f"optimize({name}=...) takes a torchslim.{cls.__name__} (or a dict of its fields), "
                          f"got {type(given).__name__}: write {name}=torchslim.{cls.__name__}(...).")


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def _config_error(cls: type[BaseModel], err: ValidationError) -> ConfigError:
    group, parts = cls.__name__, []
    for e in err.errors():
        loc = e.get("loc", ())
        field = str(loc[0]) if loc else ""
        msg = e.get("msg", "").removeprefix("Value error, ")
        if not loc:  # a rule across fields: its message names them
            parts.append(f"{msg} ({group})")
            continue
        if e.get("type") == "extra_forbidden":
            parts.append(f"{group} has no option {field!r} (its options: {', '.join(cls.model_fields)})")
            continue
        where = f"{group}.{field}" + "".join(f"[{p}]" for p in loc[1:])
        parts.append(f"{_flag(field)} {e.get('input')!r}: {msg} ({where})")
    return ConfigError("; ".join(parts) + ".")


class Goal(_Group):
    """What "best" means, and what a candidate must meet to be eligible at all."""

    objective: Objective | None = Field(
        default=None, description="the winner's criterion: latency (batch-1 p50, ties by size), throughput, "
        "size or balanced; None: the recipe's objective, else latency")
    max_accuracy_drop: float = Field(
        default=1.0, description="accuracy budget in percentage points of the task metric (fidelity x 100 "
        "for embedding models); a candidate that drops more is not within budget")
    max_latency_ms: float | None = Field(
        default=None, description="candidates slower than this at batch 1 (p50; the smallest batch measured) "
        "are not eligible")
    max_size_mb: float | None = Field(
        default=None, description="candidates larger than this on disk (MB = 10^6 bytes) are not eligible")

    @field_validator("max_accuracy_drop")
    @classmethod
    def _budget(cls, value: float) -> float:
        if not math.isfinite(value) or value < 0:
            raise ValueError("must be a number >= 0 (percentage points)")
        return value

    @field_validator("max_latency_ms", "max_size_mb")
    @classmethod
    def _limit(cls, value: float | None) -> float | None:
        if value is not None and (not math.isfinite(value) or value <= 0):
            raise ValueError("must be a number > 0 (or None: no limit)")
        return value


class RunOptions(_Group):
    """Where the run happens, where it writes, and how long and how reproducibly it goes."""

    out: str | Path | None = Field(
        default=None, description="run directory (default runs/<timestamp>); it must be new, empty or a "
        "run of ours: nothing else is ever overwritten")
    resume: bool = Field(default=False, description="continue the run in `out`, keeping measured candidates")
    weights: str | Path | None = Field(
        default=None, description="state_dict (.pt or .safetensors, loaded with weights_only=True) for a "
        "MODEL spec that names a factory; without it the model is trained first")
    device: str | torch.device = Field(
        default="auto", description="auto (cuda when available, else cpu), cpu, cuda or cuda:N; whether CUDA is "
        "there is checked when the run starts")
    seed: int = Field(default=0, description="seeds the data split, training and calibration (0 to 2**63-1)")
    time_budget: float | None = Field(
        default=None, description="seconds; no new candidate starts once it would be exceeded")
    html: bool = Field(default=True, description="write report.html beside report.json")
    executor: Literal["local", "ray"] | None = Field(
        default=None, description="local (one candidate at a time in this process) or ray (parallel builds "
        "on a Ray cluster, timed on its target node; docs/cluster.md); None: the recipe's, else local")
    ray_address: str | None = Field(
        default=None, description="the Ray cluster to join (default: RAY_ADDRESS, else Ray starts on this "
        "machine); only with executor ray")

    @field_validator("seed", mode="before")
    @classmethod
    def _seed(cls, value: Any) -> int:
        # torch's generators overflow beyond 2**63-1; a bool or 1.5 is a slip, not a seed.
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
            raise ValueError("must be a whole number from 0 to 2**63-1")
        return value

    @field_validator("time_budget")
    @classmethod
    def _time_budget(cls, value: float | None) -> float | None:
        if value is not None and (not math.isfinite(value) or value < 0):
            raise ValueError("must be a number of seconds >= 0")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> RunOptions:
        if self.resume and not self.out:
            raise ValueError("--resume needs --out DIR: the run directory to continue")
        if self.ray_address and self.executor == "local":  # executor None: the recipe may say ray
            raise ValueError("--ray-address is only used with --executor ray")
        return self

    @field_validator("device")
    @classmethod
    def _device(cls, value: str | torch.device) -> str | torch.device:
        if isinstance(value, torch.device):
            return value
        name = value.strip().lower()
        if name not in ("auto", "cpu") and not re.fullmatch(r"cuda(:\d+)?", name):
            raise ValueError("Unknown device: use auto, cpu or cuda (cuda:N for a specific GPU)")
        return name


class MeasureOptions(_Group):
    """How every candidate (and the baseline) is timed."""

    batch_sizes: tuple[int, ...] = Field(
        default=(1, 32), description="batch sizes to time (sorted, duplicates dropped); latency is keyed by "
        "each, throughput is at the largest")
    measure_fn: Callable = Field(
        default=measure, description="the measurement harness (torchslim.bench.measure); a replacement takes "
        "the same arguments and returns Metrics. A seam for tests and custom hardware, not a tuning knob")

    @field_validator("batch_sizes", mode="before")
    @classmethod
    def _batch_sizes(cls, value: Any) -> tuple[int, ...]:
        if isinstance(value, int):
            value = (value,)
        try:
            sizes = [int(b) for b in value if not isinstance(b, bool) and int(b) == b]
            ok = len(sizes) == len(value) > 0 and all(1 <= b <= MAX_BATCH_SIZE for b in sizes)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"batch sizes must be whole numbers from 1 to {MAX_BATCH_SIZE}, e.g. (1, 32)")
        return tuple(sorted(set(sizes)))

