"""``torchslim.optimize``: baseline -> every candidate of a recipe -> best within budget.

The run directory gets ``report.json`` (rewritten atomically after every candidate, so a
kill loses at most the candidate that was running and ``RunOptions(resume=True)`` carries on),
``report.html``, ``run.log``, ``baseline.pt2`` and ``candidates/<name>/``.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from torchslim._version import __version__
from torchslim.artifacts import load, save_exported
from torchslim.bench import CpuContention, measure, predict, set_threads
from torchslim.core.device import resolve_device
from torchslim.core.files import atomic_write_buffered
from torchslim.core.log import log_to_file, say
from torchslim.core.model_check import check_classifier
from torchslim.core.notes import Note
from torchslim.core.progress import CandidateProgress
from torchslim.core.rundir import RunDir, RunKind, claim_run_dir
from torchslim.data import DataBundle, load_data
from torchslim.errors import ArtifactError, ConfigError
from torchslim.pipeline._edge import search_stage
from torchslim.pipeline._executor import open_executor, resolve_executor, search_in_parallel
from torchslim.pipeline._options import Goal, MeasureOptions, RunOptions
from torchslim.pipeline._recipe import LoadedRecipe, PlannedCandidate, load_recipe
from torchslim.pipeline._refine import refine_plans
from torchslim.pipeline._refusals import met_by, skipped_record, take_refusal
from torchslim.pipeline._resume import (
    check_model_and_data,
    check_same_run,
    interrupted,
    verified_artifact,
)
from torchslim.pipeline._runoff import runoff
from torchslim.pipeline._runoff import why_not as runoff_blocked
from torchslim.pipeline._search import SearchSetup, run_candidate, skip_reason
from torchslim.pipeline._select import (
    OBJECTIVES,
    Constraints,
    is_within_budget,
    pareto_front,
    winners,
)
from torchslim.pipeline._sensitivity import layer_sensitivity
from torchslim.report import Candidate, Report, environment, load_report, write_report
from torchslim.specs import ModelHandle, resolve

BASELINE_WEIGHTS = "baseline_weights.pt"  # lets --resume rebuild the very same baseline


def new_run_dir(root: str | Path = "runs") -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(root) / stamp
    n = 1
    while path.exists():
        path = Path(root) / f"{stamp}-{n}"
        n += 1
    return path


OPTIMIZE_RUN = RunKind("optimize", results=("report.json",), entries=frozenset(
    {"report.json", "report.html", "run.log", "candidates", "baseline.pt2", "baseline.pt2.json", BASELINE_WEIGHTS}))


def prepare_run_dir(out: str | Path | None, resume: bool) -> tuple[RunDir, Report | None]:
    """The claimed (locked) run directory and, with ``resume``, the report of the run it holds.

    A directory holding anything but a run of ours is never written to (see ``core.rundir``).
    """
    run = claim_run_dir(out if out else new_run_dir(), OPTIMIZE_RUN, resume=resume)
    previous = None
    if resume and (run.path / "report.json").is_file():
        try:
            previous = load_report(run.path)
        except ArtifactError as e:
            run.release()
            raise ConfigError(f"Cannot resume {str(run.path)!r}: {e.message} Choose a new --out directory.") from None
    return run, previous


def optimize(
    model: str | nn.Module = "digits-cnn",
    data: str | DataBundle = "digits",
    recipe: str | Path | Mapping | LoadedRecipe = "default",
    *,
    goal: Goal | None = None,
    run: RunOptions | None = None,
    measure: MeasureOptions | None = None,
) -> Report:
    """Run every candidate of ``recipe`` on ``model`` and keep the best within the budget.

    ``model``/``data`` are specs (SPEC.md section 2) or an ``nn.Module`` with a ``DataBundle``
    (or a DATA spec). ``recipe`` is a built-in NAME, a YAML FILE, a mapping of the same shape,
    or a ``LoadedRecipe`` (``load_recipe(..., step_table=...)``: the tests' seam for fake steps).
    The options come in three typed groups (each field documented on its class; None: the
    defaults, a dict of fields is accepted too):

    - ``goal=Goal(objective, max_accuracy_drop, max_latency_ms, max_size_mb)``: what "best"
      means (the recipe's ``objective`` when not given, else latency) and what makes a
      candidate ineligible; the accuracy budget is in percentage points (default 1.0);
    - ``run=RunOptions(out, resume, weights, device, seed, time_budget, html, executor,
      ray_address)``: the run directory, the device, the seed, the time budget (no new candidate
      starts once it would be exceeded), and the executor (local or ray, docs/cluster.md);
    - ``measure=MeasureOptions(batch_sizes, measure_fn)``: the batch sizes timed, and the
      measurement harness (a replacement is a seam for tests and custom hardware).

    A bad value is a ``ConfigError`` naming it, raised before any work (the CLI exits 2).
    """
    goal, run, measure = Goal.of(goal, "goal"), RunOptions.of(run, "run"), MeasureOptions.of(measure, "measure")
    check_model_and_data(model, data)
    dev = resolve_device(run.device)
    loaded = recipe if isinstance(recipe, LoadedRecipe) else load_recipe(recipe)  # a bad recipe fails before any work
    settings = _Settings(max_accuracy_drop=goal.max_accuracy_drop, device=dev, time_budget=run.time_budget,
                         seed=run.seed, batch_sizes=list(measure.batch_sizes), step_table=loaded.step_table,
                         measure_fn=measure.measure_fn, html=run.html,
                         objective=_check_objective(goal.objective, loaded.spec.objective),
                         constraints=Constraints(goal.max_latency_ms, goal.max_size_mb),
                         executor=resolve_executor(run.executor, loaded.spec.executor))  # no ray: exit 2 before any work
    claimed, previous = prepare_run_dir(run.out, run.resume)
    run_dir = claimed.path
    handler = None
    try:
        if previous is not None:
            check_same_run(previous, model, data, loaded.name, run_dir)
        handler = log_to_file(run_dir / "run.log")
        report = _run_on_executor(model, data, loaded, run_dir, previous, run.weights, settings, run.ray_address)
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt) and claimed.has_result():
            interrupted(f"interrupted: measured candidates are in {run_dir / 'report.json'}; "
                        f"continue with --out {run_dir} --resume")
        _close(handler)
        claimed.abandon()  # before the first result: leave --out as it was found
        raise
    finally:
        _close(handler)
        claimed.release()
    return report


def _run_on_executor(model, data, loaded: LoadedRecipe, run_dir: Path, previous: Report | None, weights,
                     opts: _Settings, ray_address: str | None) -> Report:
    """``_run`` with the executor named by ``opts.executor`` started (ray: the cluster joined) and left."""
    with open_executor(opts.executor, address=ray_address, model_spec=model if isinstance(model, str) else None) as runner:
        return _run(model, data, loaded, run_dir, previous, weights, dataclasses.replace(opts, executor=runner))


def _check_objective(given: str | None, from_recipe: str | None) -> str:
    objective = given if given not in (None, "") else (from_recipe or "latency")
    if objective not in OBJECTIVES:
        raise ConfigError(f"--objective {objective!r}: use one of {', '.join(OBJECTIVES)}.")
    return objective


def _close(handler: logging.Handler | None) -> None:
    if handler is not None:
        logging.getLogger("torchslim").removeHandler(handler)
        handler.close()


def _resolve(model, data, weights, dev, seed, run_dir: Path) -> tuple[ModelHandle, DataBundle, str, str]:
    saved = run_dir / BASELINE_WEIGHTS
    if isinstance(model, nn.Module):
        bundle = data if isinstance(data, DataBundle) else load_data(data, seed=seed)
        module = copy.deepcopy(model).to(dev).eval()
        if bundle.task == "classification":
            check_classifier(module, tuple(t.to(dev) for t in bundle.example_inputs(2, split="train")),
                             num_classes=bundle.num_classes)
        if saved.is_file():
            module.load_state_dict(torch.load(saved, map_location=dev, weights_only=True))
        return ModelHandle(module, f"python:{type(model).__name__}"), bundle, f"python:{type(model).__name__}", bundle.spec
    if isinstance(data, DataBundle):
        raise ConfigError("Give data as a DATA spec string when the model is a MODEL spec string.")
    if weights is None and saved.is_file() and not model.startswith("hf:"):
        weights = str(saved)  # resuming: the baseline this run started from, not a retrained one
    handle, bundle = resolve(model, data, weights=weights, device=dev, seed=seed, log=say)
    return handle, bundle, model, data


@dataclass(frozen=True)
class _Settings:
    """The option groups resolved for one run (the device found, the objective and executor
    settled against the recipe): what ``_run`` and the executors read. The Ray executor reads
    ``device``, ``batch_sizes`` and ``measure_fn`` from it to time the baseline on its target."""

    max_accuracy_drop: float
    device: torch.device
    time_budget: float | None
    seed: int
    batch_sizes: list[int]
    step_table: Mapping[str, Any] | None
    measure_fn: Callable
    html: bool
    objective: str = "latency"
    constraints: Constraints = Constraints()
    # pipeline._executor: its name ("local" | "ray"), then inside _run the executor itself
    executor: Any = None


def _run(model, data, loaded: LoadedRecipe, run_dir: Path, previous: Report | None, weights, opts: _Settings) -> Report:
    started = time.perf_counter()
    dev = opts.device
    set_threads()
    torch.manual_seed(opts.seed)
    handle, bundle, model_name, data_name = _resolve(model, data, weights, dev, opts.seed, run_dir)
    baseline_model = handle.model.to(dev).eval()
    weights_path = run_dir / BASELINE_WEIGHTS
    if not weights_path.exists():
        state = {k: v.detach().cpu().clone() for k, v in baseline_model.state_dict().items()}
        atomic_write_buffered(weights_path, lambda f: torch.save(state, f))
    example = tuple(t.to(dev) for t in bundle.example_inputs(2, split="train"))
    input_names = getattr(handle.hf, "input_names", None) if handle.hf is not None else None
    reference = predict(baseline_model, bundle.test, device=dev)[0] if bundle.task == "embedding" else None
    baseline = _baseline(baseline_model, bundle, run_dir, previous, example, input_names, reference, opts)
    report = Report(torchslim_version=__version__, environment=environment(dev), model=model_name, data=data_name,
                    task=bundle.task, metric=bundle.metric, budget={"max_accuracy_drop": opts.max_accuracy_drop},
                    baseline=baseline, candidates=[], best=None, recipe=loaded.name, objective=opts.objective,
                    constraints=opts.constraints.as_dict())
    report._run_dir = str(run_dir)
    report.sensitivity = _sensitivity(loaded, previous, baseline_model, bundle, dev)
    write_report(report, run_dir)

    setup = SearchSetup(run_dir=run_dir, data=bundle, baseline_model=baseline_model, baseline=baseline, device=dev,
                        example_inputs=example, batch_sizes=opts.batch_sizes, max_accuracy_drop=opts.max_accuracy_drop,
                        seed=opts.seed, input_names=input_names, reference=reference, measure_fn=opts.measure_fn,
                        tuning=loaded.spec.tuning, objective=opts.objective, executor=opts.executor)
    if getattr(opts.executor, "parallel", False):  # queued builds are stopped once the budget is spent
        opts.executor.watch_budget(started, opts.time_budget, setup.durations)
    plans = [p for p in loaded.candidates if not p.devices or dev.type in p.devices]
    for p in loaded.candidates:
        if p not in plans:
            say(f"{p.name}: not planned, it runs only on {', '.join(p.devices)} (this run: {dev.type})")
    done = {c.name: c for c in (previous.candidates if previous else []) if c.status in ("ok", "failed")}
    _run_stage(plans, setup, report, done, started, opts.time_budget, "")
    if loaded.spec.search is not None:
        search = (functools.partial(search_in_parallel, opts.executor) if getattr(opts.executor, "parallel", False)
                  else search_stage)
        search(loaded.spec.search, list(report.candidates), {p.name: p for p in plans}, report.sensitivity,
               opts.step_table, opts.objective, baseline.metrics, opts.max_accuracy_drop,
               lambda plan, label: _run_one(plan, setup, report, done, started, opts.time_budget, label),
               refused=lambda plan: met_by(plan, report.refusals))
    if loaded.spec.refine is not None:
        refined = refine_plans(loaded.spec.refine, report.candidates, {p.name: p for p in plans}, report.sensitivity,
                               opts.step_table, opts.objective, baseline.metrics)
        _run_stage(refined, setup, report, done, started, opts.time_budget, "refine ")
    _choose(report, opts)
    if loaded.spec.runoff is not None and report.best is not None:
        _runoff(report, loaded.spec.runoff, opts, bundle, run_dir, started)
    if getattr(opts.executor, "parallel", False):
        opts.executor.finish(report)
    write_report(report, run_dir)
    if opts.html:
        write_html(report, run_dir)
    return report


def _baseline(baseline_model, bundle, run_dir: Path, previous: Report | None, example, input_names, reference,
              opts: _Settings) -> Candidate:
    """The baseline's record: reused from the run being resumed when its artifact still verifies."""
    if (previous is not None and previous.baseline.status == "ok"
            and verified_artifact(run_dir, previous.baseline.artifact, "resume: baseline")):
        say("resume: reusing the measured baseline")
        return previous.baseline
    say("saving the baseline artifact")
    artifact = save_exported(baseline_model, run_dir / "baseline.pt2", example, task=bundle.task, input_names=input_names)
    if getattr(opts.executor, "parallel", False):  # timed on the target node like every candidate
        return opts.executor.measure_baseline(artifact, bundle, reference, opts)
    say("measuring the baseline")
    fn = load(artifact, device=opts.device)
    with CpuContention() as contention:
        metrics = opts.measure_fn(fn, bundle, artifact=artifact, runtime="eager", batch_sizes=opts.batch_sizes,
                                  device=opts.device, reference=reference, params=None, macs=None,
                                  progress=lambda m: say(f"baseline: {m}"))
    busy = contention.note()
    if busy:
        say(f"baseline: warning: {busy}")
    return Candidate(name="baseline", steps=[], status="ok", within_budget=True, artifact=artifact.name, metrics=metrics,
                     notes=[Note(kind="busy_machine", text=busy)] if busy else [])


def _sensitivity(loaded: LoadedRecipe, previous: Report | None, model, bundle, dev) -> dict | None:
    spec = loaded.spec.sensitivity
    if spec is None:
        return None
    if previous is not None and previous.sensitivity:
        return previous.sensitivity
    say(f"sensitivity: pruning one layer at a time ({spec.ratio:.0%}), scored on the validation split")
    return layer_sensitivity(model, bundle, ratio=spec.ratio, max_layers=spec.max_layers, device=dev)


def _choose(report: Report, opts: _Settings) -> None:
    """best (the chosen objective's winner), every objective's winner, the Pareto front, and a
    note on each candidate a hard constraint made ineligible."""
    base = report.baseline.metrics
    for c in report.candidates:
        if c.status == "ok" and c.metrics is not None:
            for why in opts.constraints.violations(c.metrics):
                c.notes.append(Note(kind="warning", text=f"not eligible: {why}"))
    report.winners = winners(report.candidates, base, opts.constraints)
    report.best = report.winners[opts.objective]
    report.pareto = pareto_front(report.candidates)
    say(f"best ({opts.objective}): {report.best}" if report.best else
        "no candidate is within the accuracy budget" + (" and the constraints" if opts.constraints.as_dict() else ""))


def _runoff(report: Report, spec, opts: _Settings, bundle: DataBundle, run_dir: Path, started: float) -> None:
    """Re-time the objective's close contenders side by side; their paired medians settle ``best``.
    Whatever goes wrong here leaves the sequential pick standing, said in the log."""
    elsewhere = None
    if opts.measure_fn is not measure:
        elsewhere = "a custom measure_fn times the candidates"
    elif opts.time_budget is not None and time.perf_counter() - started >= opts.time_budget:
        elsewhere = "the time budget is spent"
    reason = runoff_blocked(report, elsewhere)
    if reason is not None:
        say(f"runoff: not run ({reason}); the pick stands on the sequential measurements")
        return
    try:
        if getattr(opts.executor, "parallel", False):  # timed on the target node, like every candidate
            record = opts.executor.runoff(report, spec, opts, bundle, run_dir)
        else:
            record = runoff(report, opts.objective, spec, opts.constraints, run_dir=run_dir, device=opts.device,
                            make_inputs=lambda b: tuple(t.to(opts.device) for t in bundle.example_inputs(b)), say=say)
    except Exception as e:  # noqa: BLE001  (the candidates' own measurements still stand)
        logging.getLogger("torchslim").info("runoff failed", exc_info=True)
        say(f"runoff: failed ({type(e).__name__}: {str(e).strip()[:200]}); the pick stands on the sequential measurements")
        return
    report.runoff = record
    if record is not None and record.picked != report.best:
        report.best = report.winners[opts.objective] = record.picked
        say(f"best ({opts.objective}): {report.best}")


def _run_stage(plans: list[PlannedCandidate], setup: SearchSetup, report: Report, done: dict[str, Candidate],
               started: float, time_budget: float | None, prefix: str) -> None:
    if getattr(setup.executor, "parallel", False):
        first = len(report.candidates)
        records = setup.executor.run_all([(_run_one, plan, setup, report, done, started, time_budget,
                                           f"{prefix}[{i}/{len(plans)}]") for i, plan in enumerate(plans, start=1)])
        report.candidates[first:] = records  # the recipe's order, whatever order they finished in
        return
    with CandidateProgress(len(plans), prefix=prefix, durations=setup.durations, started=started,
                           time_budget=time_budget) as progress:
        for i, plan in enumerate(plans, start=1):
            progress.start(i, plan.name)
            _run_one(plan, setup, report, done, started, time_budget, f"{prefix}[{i}/{len(plans)}]")
            progress.finish()


def _run_one(plan: PlannedCandidate, setup: SearchSetup, report: Report, done: dict[str, Candidate],
             started: float, time_budget: float | None, label: str) -> Candidate:
    """Run (or keep from the run being resumed, or skip for time) one candidate; append its record."""
    old = done.get(plan.name)
    if old is not None and old.status == "ok" and not verified_artifact(setup.run_dir, old.artifact, f"{label} {plan.name}"):
        old = None
    if old is not None and old.steps == plan.step_strings():
        say(f"{label} {plan.name}: already measured in this run directory; kept")
        if old.status == "ok" and old.metrics is not None:  # the budget may differ from the first run's
            old.within_budget = is_within_budget(setup.baseline.metrics, old.metrics, setup.max_accuracy_drop)
        report.candidates.append(old)
        return old
    reason = skip_reason(started, time_budget, setup.durations)
    if (refusal := met_by(plan, report.refusals)) is not None:  # it would meet it again: nothing to learn
        say(f"{label} {plan.name}: skipped (refused: {refusal.family}, see above)")
        record = skipped_record(plan, refusal)
    elif reason is not None:
        say(f"{label} {plan.name}: skipped ({reason})")
        record = Candidate(name=plan.name, steps=plan.step_strings(), status="skipped", error=reason,
                           within_budget=False, refined_from=plan.refined_from)
    else:
        record = setup.executor.run(plan, setup, label) if setup.executor is not None else run_candidate(plan, setup, label)
        take_refusal(report, record)
    report.candidates.append(record)
    write_report(report, setup.run_dir)  # after every candidate: a kill loses at most the running one
    return record


def write_html(report: Report, run_dir: str | Path) -> Path:
    from torchslim.core.files import atomic_write_text
    from torchslim.report import render_html

    if report.run_dir is None:  # a report loaded from disk: its snippets name paths under run_dir
        report._run_dir = str(run_dir)
    return atomic_write_text(Path(run_dir) / "report.html", render_html(report))
