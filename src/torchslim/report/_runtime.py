"""A candidate's runtime settings in report.json: what it runs with, at what precision, and the
tries of the tuning search that chose them (``torchslim.pipeline._tune``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class SettingsTry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    settings: dict[str, Any]  # the runtime's settings (``torchslim.runtime._settings``)
    p50_ms: float | None = None  # at the tuning batch; None when it was not measured
    runs: int = 0
    error: str | None = None  # why it was not measured
    chosen: bool = False


class SettingsTuning(BaseModel):
    """The bounded search over a runtime's settings; the first try is the default setting."""

    model_config = ConfigDict(extra="forbid")
    objective: str
    batch_size: int
    max_tries: int
    max_seconds: float
    min_gain: float  # a try must beat the default by this share to replace it
    tries: list[SettingsTry] = Field(default_factory=list)


class RuntimeRecord(BaseModel):
    """What the candidate's artifact runs with (also in its manifest, which ``torchslim.load`` reads)."""

    model_config = ConfigDict(extra="forbid")
    runtime: str
    settings: dict[str, Any]
    source: Literal["default", "tuned", "recipe"]
    effective_precision: str | None = None  # read back from the compiled model (OpenVINO)
    tuning: SettingsTuning | None = None
