"""Running one candidate: steps -> artifact -> load -> measure -> a ``Candidate`` record.

Every exception inside a candidate becomes ``status: failed`` with its reason, and the
search goes on: one technique that cannot handle a model must not cost the whole run.
(KeyboardInterrupt is not an ``Exception`` and still stops the run; --resume picks it up.)
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from torchslim.artifacts import artifact_files, manifest_path, read_manifest, save_for_runtime
from torchslim.bench import CpuContention, count_macs, count_params, measure
from torchslim.core.changes import snapshot, step_changes
from torchslim.core.log import say
from torchslim.core.notes import Note
from torchslim.core.padding import SKIP_PADDING_NOTE, SkipPadding
from torchslim.core.rundir import remove_inside
from torchslim.core.step import StepContext, StepOutput
from torchslim.data import DataBundle
from torchslim.errors import RefusedError, TorchslimError
from torchslim.pipeline._recipe import PlannedCandidate, TuningSpec
from torchslim.pipeline._refusals import refused_record
from torchslim.pipeline._select import honesty_notes, is_within_budget
from torchslim.pipeline._tune import load_with_settings
from torchslim.report import Candidate, FallbackRecord, LayerChangeRecord

logger = logging.getLogger("torchslim")


@dataclass
class SearchSetup:
    """What every candidate shares: the baseline, the data, where to write, how to measure."""

    run_dir: Path
    data: DataBundle  # the full bundle; only measurement touches ``data.test``
    baseline_model: nn.Module
    baseline: Candidate
    device: torch.device
    example_inputs: tuple[torch.Tensor, ...]  # a training batch of 2, on ``device``
    batch_sizes: Sequence[int]
    max_accuracy_drop: float
    seed: int = 0
    input_names: list[str] | None = None
    reference: torch.Tensor | None = None  # baseline outputs on the test split (embeddings)
    measure_fn: Callable = measure
    durations: list[float] = field(default_factory=list)
    tuning: TuningSpec | None = None  # the recipe's ``tuning:``: runtime settings tuned per candidate
    objective: str = "latency"  # what the tuning optimizes (batch 1, or the largest batch for throughput)
    executor: Any = None  # pipeline._executor: where candidates run (None: here, one at a time)

    def step_data(self) -> DataBundle:
        # Steps get a bundle whose "test" is the validation split: code in a technique that
        # evaluates on data.test (for its own logs or early stopping) never sees held-out data.
        return dataclasses.replace(self.data, test=self.data.val)


def candidate_dir(run_dir: Path, name: str) -> Path:
    return run_dir / "candidates" / name


def error_text(exc: BaseException, max_lines: int = 3, max_chars: int = 600) -> str:
    message = exc.message if isinstance(exc, TorchslimError) else str(exc)
    lines = [ln for ln in message.strip().splitlines() if ln.strip()][:max_lines]
    text = f"{type(exc).__name__}: " + " ".join(ln.strip() for ln in lines)
    return text if len(text) <= max_chars else text[: max_chars - 3] + "..."


def run_candidate(plan: PlannedCandidate, setup: SearchSetup, label: str) -> Candidate:
    """Run, save, load and measure one candidate; never raises for the candidate's own failures."""
    started = time.perf_counter()
    record = Candidate(name=plan.name, steps=plan.step_strings(), status="ok", refined_from=plan.refined_from)
    try:
        artifact, metrics, notes, facts = _run_and_measure(plan, setup, label)
        record.fallback = FallbackRecord.model_validate(facts["fallback"]) if facts.get("fallback") else None
        record.runtime_settings = facts.get("runtime_settings")
        record.changes = [LayerChangeRecord.model_validate(c) for c in facts.get("changes", [])]
        record.artifact = _relative(artifact, setup.run_dir)
        record.metrics = metrics
        record.within_budget = is_within_budget(setup.baseline.metrics, metrics, setup.max_accuracy_drop)
        record.notes = notes + honesty_notes(setup.baseline.metrics, metrics)
        say(f"{label} {plan.name}: ok, {setup.data.metric} {metrics.accuracy * 100:.2f}%, "
            f"{'within' if record.within_budget else 'outside'} budget")
    except RefusedError as exc:  # up front, whatever the strength: said once, in the report's refusals
        record = refused_record(plan, exc, getattr(exc, "step_index", len(plan.steps) - 1))
        logger.info("candidate %s refused: %s", plan.name, exc.message)
        say(f"{label} {plan.name}: refused: {exc.message}")
    except Exception as exc:  # noqa: BLE001  (recorded, not swallowed: it is in the report)
        record.status, record.error, record.within_budget = "failed", error_text(exc), False
        record.metrics, record.artifact = None, None
        logger.info("candidate %s failed", plan.name, exc_info=True)  # the traceback goes to run.log
        say(f"{label} {plan.name}: failed: {record.error}")
    record.duration_s = round(time.perf_counter() - started, 3)
    setup.durations.append(record.duration_s)
    return record


def _run_and_measure(plan: PlannedCandidate, setup: SearchSetup, label: str):
    work_dir = candidate_dir(setup.run_dir, plan.name)
    if work_dir.exists() or work_dir.is_symlink():  # a candidate interrupted in an earlier run: start it clean
        remove_inside(work_dir, setup.run_dir)
    work_dir.mkdir(parents=True)
    torch.manual_seed(setup.seed)
    teacher = copy.deepcopy(setup.baseline_model).eval().requires_grad_(False)
    ctx = StepContext(data=setup.step_data(), device=setup.device, teacher=teacher, work_dir=work_dir,
                      example_inputs=setup.example_inputs, seed=setup.seed,
                      log=lambda msg: say(f"{label} {plan.name}: {msg}"), input_names=setup.input_names,
                      max_accuracy_drop=setup.max_accuracy_drop)
    model, output, texts, facts = run_steps(plan, copy.deepcopy(setup.baseline_model), ctx,
                                            lambda msg: say(f"{label} {plan.name}: {msg}"))
    notes: list[Note] = [Note(kind="technique", text=n) for n in texts]
    if isinstance(model, nn.Module):
        model.eval()
    say(f"{label} {plan.name}: saving the artifact")
    runtime = plan.runtime or output.runtime or "eager"
    artifact = Path(output.artifact) if output.artifact is not None else _save(model, work_dir, runtime, plan, setup)
    artifact = _inside_run_dir(artifact, work_dir, setup.run_dir)
    runtime = plan.runtime or read_manifest(artifact).runtime
    fn, facts["runtime_settings"], tuned = load_with_settings(
        artifact, runtime, fixed=plan.runtime_settings, spec=setup.tuning, objective=setup.objective,
        batch_sizes=setup.batch_sizes, make_inputs=lambda b: tuple(t.to(setup.device) for t in setup.data.example_inputs(b)),
        device=setup.device, say=lambda msg: say(f"{label} {plan.name}: {msg}"))
    notes += tuned
    if isinstance(fn, SkipPadding):
        notes.append(Note(kind="technique", text=SKIP_PADDING_NOTE))
    params = macs = None
    if not isinstance(fn, nn.Module) and isinstance(model, nn.Module):
        # Foreign runtimes (onnxruntime, compiled) hide their weights; count the model they came from.
        params = count_params(model)
        macs = count_macs(model, tuple(t[:1] for t in setup.example_inputs))
    say(f"{label} {plan.name}: measuring")
    with CpuContention() as contention:
        metrics = setup.measure_fn(
            fn, setup.data, artifact=artifact, runtime=runtime, batch_sizes=setup.batch_sizes, device=setup.device,
            reference=setup.reference, params=params, macs=macs,
            progress=lambda msg: say(f"{label} {plan.name}: measuring {msg}"),
        )
    if busy := contention.note():
        notes.append(Note(kind="busy_machine", text=busy))
        say(f"{label} {plan.name}: warning: {busy}")
    return artifact, metrics, notes, facts


def run_steps(plan: PlannedCandidate, model: nn.Module, ctx: StepContext, say_step: Callable[[str], None]):
    """The candidate's steps on ``model`` (the caller's copy), in order, here or on a Ray worker:
    the model, the last step's output, the technique notes and the merged facts, with
    ``changes`` (what each step did to the layers). A RefusedError carries the index of the
    step that refused, so the search can skip every candidate reaching the same steps."""
    output = StepOutput(model=model)
    notes: list[str] = []
    facts: dict = {}
    changes: list[dict] = []
    before = _snapshot(model)
    for j, step in enumerate(plan.steps, start=1):
        say_step(f"step {j}/{len(plan.steps)} {step.describe()}")
        try:
            output = step.step.run(model, step.config, ctx)
        except RefusedError as exc:
            exc.step_index = j - 1  # the refused family is the steps up to this one
            raise
        if not isinstance(output, StepOutput):
            raise TypeError(f"step {step.name!r} returned {type(output).__name__}, not a StepOutput")
        model = output.model
        notes += [n for n in output.notes if n not in notes]
        facts |= output.facts
        after = _snapshot(model)
        changes += _changes(step.describe(), before, output, after)
        before = after
    facts["changes"] = changes
    return model, output, notes, facts


def _snapshot(model):
    try:
        return snapshot(model) if isinstance(model, nn.Module) else None
    except Exception:  # noqa: BLE001  (the record of changes is a courtesy: it never fails a candidate)
        logger.info("could not snapshot the model's layers", exc_info=True)
        return None


def _changes(step: str, before, output: StepOutput, after) -> list[dict]:
    try:
        return [{"step": step, **dataclasses.asdict(c)} for c in step_changes(before, output, after)]
    except Exception:  # noqa: BLE001
        logger.info("could not tell what step %s changed", step, exc_info=True)
        return []


def _save(model: nn.Module, work_dir: Path, runtime: str, plan: PlannedCandidate, setup: SearchSetup) -> Path:
    return save_for_runtime(model, work_dir, setup.example_inputs, runtime, task=setup.data.task,
                            input_names=setup.input_names, steps=plan.step_strings())


def _inside_run_dir(artifact: Path, work_dir: Path, run_dir: Path) -> Path:
    """A step may write its artifact anywhere; the report only points inside the run dir."""
    try:
        artifact.resolve().relative_to(run_dir.resolve())
        return artifact
    except ValueError:
        target = work_dir / artifact.name
        for part in artifact_files(artifact)[1:]:  # an OpenVINO IR's .bin
            shutil.copy2(part, work_dir / part.name)
        shutil.copy2(artifact, target)
        if manifest_path(artifact).exists():
            shutil.copy2(manifest_path(artifact), manifest_path(target))
        return target


def _relative(path: Path, run_dir: Path) -> str:
    return str(path.resolve().relative_to(run_dir.resolve()))


def skip_reason(setup_started: float, time_budget: float | None, durations: list[float]) -> str | None:
    """Why the next candidate must not start under ``time_budget`` (None: go ahead).

    A candidate is not started when the budget is spent, or when a typical candidate so far
    (the median duration) would not finish inside what is left of it.
    """
    if time_budget is None:
        return None
    elapsed = time.perf_counter() - setup_started
    left = time_budget - elapsed
    typical = statistics.median(durations) if durations else 0.0
    if left <= 0:
        return f"not run: the time budget of {time_budget:g} s was spent ({elapsed:.0f} s elapsed); raise --time-budget to run it"
    if typical > left:
        return (f"not run: a candidate takes ~{typical:.0f} s and only {left:.0f} s of the {time_budget:g} s "
                "time budget was left; raise --time-budget to run it")
    return None
