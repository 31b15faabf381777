from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from torchslim.bench import Metrics
from torchslim.core.notes import Note
from torchslim.quantize import FallbackResult, FallbackStep
from torchslim.report._runtime import RuntimeRecord
from torchslim.runtime import thread_budget

# The fallback record is the quantizer's own model: one schema from the int8 paths to report.json.
FallbackTry = FallbackStep
FallbackRecord = FallbackResult


class Execution(BaseModel):
    """Where and when a candidate was built and timed (``--executor ray``, pipeline._ray).

    Timestamps are epoch seconds on the clock of the node that took them: ``submitted`` the
    driver's, ``build_*`` the building node's, ``measure_*`` the target's.
    """

    model_config = ConfigDict(extra="forbid")
    built_on: str | None = None  # Ray node id
    measured_on: str | None = None
    attempts: int = 1  # builds started (more than one: a worker or node died and Ray retried it)
    submitted: float | None = None
    build_start: float | None = None
    build_end: float | None = None
    measure_start: float | None = None
    measure_end: float | None = None
    build_s: float | None = None
    wait_s: float | None = None  # queued before its build, and between its build and its timing
    measure_s: float | None = None

    def fill_durations(self) -> None:
        if self.build_start is not None and self.build_end is not None:
            self.build_s = round(self.build_end - self.build_start, 3)
        if self.measure_start is not None and self.measure_end is not None:
            self.measure_s = round(self.measure_end - self.measure_start, 3)
        waits = []
        if self.submitted is not None and self.build_start is not None:
            waits.append(max(self.build_start - self.submitted, 0.0))
        if self.build_end is not None and self.measure_start is not None:
            waits.append(max(self.measure_start - self.build_end, 0.0))
        self.wait_s = round(sum(waits), 3) if waits else None
class LayerChangeRecord(BaseModel):
    """One layer a step changed (torchslim.core.changes): pruned, quantized, kept in float, ..."""

    model_config = ConfigDict(extra="forbid")
    step: str  # the step that did it, as in ``Candidate.steps``
    layer: str  # the module's path ("" for the model as a whole)
    kind: str  # one of torchslim.core.changes.KINDS
    detail: str  # "out_features 64 -> 32", "Linear 64x64 -> rank 16", ...


class Refusal(BaseModel):
    """A technique that refused a block of this model up front (errors.RefusedError), said once.

    ``family`` is the steps up to the refusing one with their strengths left out: every
    candidate or search try reaching the same steps would meet the same refusal, so none ran.
    """

    model_config = ConfigDict(extra="forbid")
    family: str  # "prune(method=channel)", or "factorize() -> prune(method=channel)"
    technique: str
    block: str
    reason: str
    way_out: str
    candidates: list[str] = Field(default_factory=list)  # every candidate it skipped, first the one that met it


class Candidate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    steps: list[str] = Field(default_factory=list)
    status: Literal["ok", "failed", "skipped"] = "ok"
    error: str | None = None
    within_budget: bool = False
    artifact: str | None = None  # relative to the run directory
    metrics: Metrics | None = None
    notes: list[Note] = Field(default_factory=list)  # each with its kind (torchslim.core.notes)
    duration_s: float | None = None  # wall time of its steps + measurement
    refined_from: str | None = None  # set for second-stage variants of another candidate
    fallback: FallbackRecord | None = None  # accuracy-aware int8 fallback: the layers kept in float
    runtime_settings: RuntimeRecord | None = None  # what it runs with, and the tuning tries that chose it
    execution: Execution | None = None  # --executor ray: where it was built and timed, and how long each took
    refused: str | None = None  # skipped: the family of a refusal in ``Report.refusals``
    changes: list[LayerChangeRecord] = Field(default_factory=list)  # what its steps did to the layers
    _refusal: Refusal | None = PrivateAttr(default=None)  # the refusal it met, until the report takes it

    @field_validator("notes", mode="before")
    @classmethod
    def _plain_strings_are_technique_notes(cls, notes):
        # A step's notes are plain strings (what the technique did); so were every note of
        # reports written before notes had kinds.
        return [{"kind": "technique", "text": n} if isinstance(n, str) else n for n in notes or []]

    def note_texts(self, *kinds: str) -> list[str]:
        """The notes' texts, only those of ``kinds`` when given."""
        return [n.text for n in self.notes if not kinds or n.kind in kinds]


class RunoffEntry(BaseModel):
    """One contender of the runoff: its paired median against the one its own measurement gave."""

    name: str
    p50_ms: float | None = None  # the runoff's median at its batch; None: it could not be loaded or run
    runs: int = 0
    measured_ms: float | None = None  # the same figure from the candidate's own (sequential) measurement
    error: str | None = None


class Runoff(BaseModel):
    """The close contenders for the objective timed again side by side, interleaved in one
    process (``torchslim.pipeline._runoff``); the pick is made on these paired figures."""

    objective: str
    batch_size: int
    margin: float  # contenders: within this fraction of the leader on the objective
    entries: list[RunoffEntry]  # the baseline among them for balanced (its speed-ups are ratios)
    before: str  # the pick the sequential measurements gave
    picked: str
    node: str | None = None  # --executor ray: the target node it was timed on

    def line(self) -> str:
        """``runoff (balanced, batch 1, timed side by side): a 0.114 ms, b 0.146 ms -> picked a;
        the sequential measurements had picked b``."""
        figures = ", ".join(f"{e.name} {e.p50_ms:.3f} ms" if e.p50_ms is not None else f"{e.name} (not timed: {e.error})"
                            for e in self.entries)
        verdict = (f"kept {self.picked}" if self.picked == self.before
                   else f"picked {self.picked}; the sequential measurements had picked {self.before}")
        return f"runoff ({self.objective}, batch {self.batch_size}, timed side by side): {figures} -> {verdict}"


class Report(BaseModel):
    model_config = ConfigDict(extra="allow")
    torchslim_version: str
    created: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    environment: dict
    model: str
    data: str
    task: Literal["classification", "embedding"] = "classification"
    metric: Literal["accuracy", "fidelity"] = "accuracy"
    budget: dict = Field(default_factory=lambda: {"max_accuracy_drop": 1.0})
    baseline: Candidate
    candidates: list[Candidate] = Field(default_factory=list)
    best: str | None = None
    objective: Literal["latency", "throughput", "size", "balanced"] = "latency"
    constraints: dict = Field(default_factory=dict)  # {"max_latency_ms": x, "max_size_mb": y} when given
    winners: dict[str, str | None] = Field(default_factory=dict)  # the best within budget per objective
    pareto: list[str] = Field(default_factory=list)  # candidates on the accuracy/latency/size front
    recipe: str | None = None  # the recipe's built-in name or file path
    sensitivity: dict | None = None  # per-layer sensitivity, when the recipe asked for it
    refusals: list[Refusal] = Field(default_factory=list)  # techniques that refused this model, each once
    runoff: Runoff | None = None  # the objective's close contenders re-timed side by side (recipe ``runoff:``)
    _run_dir: str | None = PrivateAttr(default=None)  # where it was written; not serialized

    @property
    def run_dir(self) -> str | None:
        return self._run_dir

    def candidate(self, name: str) -> Candidate | None:
        return next((c for c in self.candidates if c.name == name), None)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: str | torch.device = "cpu") -> dict:
    device = torch.device(device)
    name = "cpu"
    if device.type == "cuda":
        idx = device.index or 0
        name = f"cuda:{idx} {torch.cuda.get_device_name(idx)}"
    return {
        "torch": torch.__version__,
        "device": name,
        "cpu": _cpu_name(),
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "cores": os.cpu_count(),
        "thread_budget": thread_budget(),  # every runtime's threads (and ORT's spinning) as measured
    }
