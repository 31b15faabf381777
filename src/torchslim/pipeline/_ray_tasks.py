"""What runs on a Ray worker (``--executor ray``): a candidate's *build* and a *measurement*.

A build (any node) runs the candidate's steps, writes its artifact into a temporary folder of
that node, loads it and scores it on the held-out split (no clock is read), and returns the
artifact's files as bytes with their SHA-256 digests. A measurement (the target node only,
alone, pipeline._ray) writes those bytes to a temporary folder, chooses the runtime settings
(the recipe's, tuned, or the default: ``pipeline._tune``, as the local executor does) and
times them. Neither writes the run directory: the driver does, and checks the digests on
arrival (the manifest, which the settings change, comes back from the measurement).

A worker killed mid-build cannot remove its temporary folder: every build first removes those
of its host whose process is gone, and the driver has each node do the same when the run ends
(``pipeline._ray_sweep``).

Every failure of the candidate's own code comes back as data (``error`` and the traceback),
not as an exception: Ray would wrap it in its own traceback, and its retries are meant for a
node or worker that died, not for a technique that refuses a model.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import os
import shutil
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from torchslim.artifacts import load, manifest_path, read_manifest
from torchslim.bench import CpuContention, count_macs, count_params, set_threads
from torchslim.core.padding import SKIP_PADDING_NOTE, SkipPadding
from torchslim.core.step import StepContext
from torchslim.data import scorer
from torchslim.errors import RefusedError
from torchslim.pipeline._ray_sweep import sweep_temp, temp_folder
from torchslim.pipeline._recipe import PlannedCandidate, RunoffSpec
from torchslim.pipeline._runoff import runoff
from torchslim.pipeline._search import _inside_run_dir, _save, error_text, run_steps
from torchslim.pipeline._tune import load_with_settings
from torchslim.report import Report


class UserCodeError(Exception):
    """The user's model file cannot be imported on a worker."""


@dataclass
class DataInputs:
    """What every task of one run needs, put in Ray's object store once per run.

    The data (and, in ``ModelInputs``, the model) travel pickled (``cloudpickle``) as bytes and
    are unpickled by the task itself: a class from the user's ``file.py`` that cannot be loaded
    then fails with a message naming the file (``UserCodeError``), not a Ray traceback.
    """

    run_id: str
    data_blob: bytes
    device: str
    batch_sizes: list[int]
    reference: torch.Tensor | None  # the baseline's outputs on the test split (embeddings)
    user_file: tuple[str, str, str] | None  # (module name on the driver, file name, spec as typed)


@dataclass
class ModelInputs:
    """What a build needs besides the data (put once per run)."""

    model_blob: bytes
    example_inputs: tuple[torch.Tensor, ...]
    seed: int
    max_accuracy_drop: float
    input_names: list[str] | None


_unpacked: dict[tuple[str, str], Any] = {}  # (run_id, "model" | "data") -> object: a worker serves many tasks


def _node() -> str:
    try:
        import ray

        # get_runtime_context() would start a Ray instance in a process that has none.
        return (ray.get_runtime_context().get_node_id() or "?") if ray.is_initialized() else "?"
    except Exception:  # noqa: BLE001  (called outside a Ray task: tests, or only in a message)
        return "?"


def _import_user_file(module_name: str, file_name: str, spec: str) -> None:
    """Import the user's model file from the runtime environment's working_dir (the file's
    folder, sent by Ray) under the module name it had on the driver, so the pickled model's
    classes resolve."""
    if module_name in sys.modules:
        return
    path = Path.cwd() / file_name
    try:
        if not path.is_file():
            raise FileNotFoundError(f"{file_name} is not in the folder Ray sent to this worker ({Path.cwd()})")
        if str(path.parent) not in sys.path:
            sys.path.insert(0, str(path.parent))  # its sibling modules, as on the driver
        mod_spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(mod_spec)
        sys.modules[module_name] = module
        mod_spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001  (re-raised with the file's name)
        sys.modules.pop(module_name, None)
        raise UserCodeError(
            f"a Ray worker on node {_node()[:8]} cannot import the model file {spec.rsplit(':', 1)[0]!r} "
            f"({type(e).__name__}: {e}). Its folder is sent to every worker; a module it imports from "
            "elsewhere must be installed on every node of the cluster.") from None


def _unpack(inputs: DataInputs, blob: bytes, what: str) -> Any:
    import ray.cloudpickle as cloudpickle

    key = (inputs.run_id, what)
    if key not in _unpacked:
        if inputs.user_file is not None:
            _import_user_file(*inputs.user_file)
        try:
            value = cloudpickle.loads(blob)
        except Exception as e:  # noqa: BLE001
            raise UserCodeError(
                f"a Ray worker on node {_node()[:8]} cannot load the model or data sent by the driver "
                f"({type(e).__name__}: {e}): their classes must be importable on every node (install the "
                "package there, or give the model as file.py:factory so its folder is sent).") from None
        if len(_unpacked) > 4:  # an earlier run's objects
            _unpacked.clear()
        _unpacked[key] = value
    return _unpacked[key]


def _say(events, name: str, kind: str, text: str) -> None:
    if events is not None:
        events.add.remote(name, kind, _node(), text)  # fire and forget: progress only


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def build_candidate(plan: PlannedCandidate, model_inputs: ModelInputs, inputs: DataInputs, threads: int,
                    events=None) -> tuple[dict, dict]:
    """(facts, files): the candidate built and scored in a temporary folder of this node.

    ``files`` maps paths relative to the candidate's folder to their bytes; ``facts`` holds
    their digests, the artifact's path and runtime, the score, notes and the node's timings.
    """
    start = time.time()
    facts: dict[str, Any] = {"node": _node(), "start": start, "pid": os.getpid()}
    if events is not None:
        import ray

        # Asked, not told: once the run's time budget is spent the driver answers with the
        # reason, and a build Ray had queued ends here without doing anything.
        not_run = ray.get(events.begin.remote(plan.name, facts["node"]))
        if not_run:
            facts |= {"not_run": not_run, "end": time.time()}
            return facts, {}
    sweep_temp()
    tmp = temp_folder("build", inputs.run_id)
    files: dict[str, bytes] = {}
    try:
        torch.set_num_threads(threads)  # the CPUs this task asked Ray for, no more
        model, data = _unpack(inputs, model_inputs.model_blob, "model"), _unpack(inputs, inputs.data_blob, "data")
        facts |= _build(plan, model_inputs, inputs, model, data, tmp / plan.name, events)
        files = _files(tmp / plan.name)
        facts["digests"] = {k: hashlib.sha256(v).hexdigest() for k, v in files.items()}
    except RefusedError as exc:  # up front: the driver says it once and skips the family (pipeline._refusals)
        facts["refused"] = {"technique": exc.technique, "block": exc.block, "reason": exc.reason,
                            "way_out": exc.way_out, "step_index": getattr(exc, "step_index", len(plan.steps) - 1)}
    except Exception as exc:  # noqa: BLE001  (returned: the driver records it as the candidate's failure)
        facts["error"] = error_text(exc)
        facts["traceback"] = traceback.format_exc()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    facts["end"] = time.time()
    return facts, files


def _build(plan: PlannedCandidate, shared: ModelInputs, inputs: DataInputs, baseline: nn.Module, data,
           work_dir: Path, events) -> dict:
    """The steps of ``pipeline._search._run_and_measure`` up to the artifact, plus its score."""
    import dataclasses

    work_dir.mkdir(parents=True)
    device = torch.device(inputs.device)
    torch.manual_seed(shared.seed)
    teacher = copy.deepcopy(baseline).eval().requires_grad_(False)
    ctx = StepContext(data=dataclasses.replace(data, test=data.val), device=device, teacher=teacher,
                      work_dir=work_dir, example_inputs=shared.example_inputs, seed=shared.seed,
                      log=lambda msg: _say(events, plan.name, "step", msg), input_names=shared.input_names,
                      max_accuracy_drop=shared.max_accuracy_drop)
    model, output, notes, step_facts = run_steps(plan, copy.deepcopy(baseline), ctx,
                                                 lambda msg: _say(events, plan.name, "step", msg))
    if isinstance(model, nn.Module):
        model.eval()
    runtime = plan.runtime or output.runtime or "eager"
    setup = _SaveSetup(shared.example_inputs, data, shared.input_names)
    artifact = Path(output.artifact) if output.artifact is not None else _save(model, work_dir, runtime, plan, setup)
    artifact = _inside_run_dir(artifact, work_dir, work_dir)
    runtime = plan.runtime or read_manifest(artifact).runtime
    fn = load(artifact, runtime=runtime, device=device)
    if isinstance(fn, SkipPadding):
        notes.append(SKIP_PADDING_NOTE)
    params = macs = None
    if not isinstance(fn, nn.Module) and isinstance(model, nn.Module):
        params = count_params(model)
        macs = count_macs(model, tuple(t[:1] for t in shared.example_inputs))
    _say(events, plan.name, "step", f"scoring {data.metric} on the held-out split")
    with torch.no_grad():
        score = scorer(data.task, data.test, inputs.reference, device=device)(fn)
    return {"artifact": str(artifact.relative_to(work_dir)), "runtime": runtime, "accuracy": score,
            "params": params, "macs": macs, "notes": notes, "facts": step_facts}


@dataclass
class _SaveSetup:
    """The three fields of ``SearchSetup`` that ``_save`` reads."""

    example_inputs: tuple[torch.Tensor, ...]
    data: Any
    input_names: list[str] | None


@dataclass
class SettingsInputs:
    """How a candidate's runtime settings are chosen on the target (``pipeline._tune``)."""

    fixed: dict[str, Any] | None  # the recipe's ``runtime_settings``
    tuning: Any  # the recipe's ``tuning:`` (a TuningSpec) or None
    objective: str


def _on_this_node(shared: DataInputs, files: dict[str, bytes], tmp: Path, threads: int):
    """A target task's set-up: its threads, the data unpacked, the artifact files written under
    ``tmp`` at their relative paths; returns the data."""
    set_threads(threads)
    data = _unpack(shared, shared.data_blob, "data")
    for rel, blob in files.items():
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_bytes(blob)
    return data


def measure_artifact(shared: DataInputs, files: dict[str, bytes], artifact: str, runtime: str, *, name: str,
                     measure_fn, threads: int, known: dict, events=None, settings: SettingsInputs | None = None) -> dict:
    """Time one artifact on this (the target) node; ``known`` holds what the build measured
    already (accuracy, params, MACs). With ``settings`` (a candidate, not the baseline) its
    runtime settings are chosen first, here where it is timed, and the rewritten manifest comes
    back in ``manifest``. Returns the metrics with this node's id and timestamps."""
    start = time.time()
    out: dict[str, Any] = {"node": _node(), "start": start}
    _say(events, name, "measure", "measuring")
    tmp = temp_folder("measure", shared.run_id)
    try:
        data = _on_this_node(shared, files, tmp, threads)
        path = tmp / artifact
        device = torch.device(shared.device)
        if settings is None:
            fn = load(path, runtime=runtime, device=device)
        else:
            fn, record, tuned = load_with_settings(
                path, runtime, fixed=settings.fixed, spec=settings.tuning, objective=settings.objective,
                batch_sizes=shared.batch_sizes, make_inputs=lambda b: tuple(t.to(device) for t in data.example_inputs(b)),
                device=device, say=lambda m: _say(events, name, "step", m))
            out["runtime_settings"] = None if record is None else record.model_dump(mode="json")
            out["notes"] = [n.text for n in tuned]
            out["manifest"] = manifest_path(path).read_bytes()
        extra = {"known_accuracy": known["accuracy"]} if known.get("accuracy") is not None else {}
        with CpuContention() as contention:
            metrics = measure_fn(fn, data, artifact=path, runtime=runtime, batch_sizes=shared.batch_sizes,
                                 device=device, reference=shared.reference, params=known.get("params"),
                                 macs=known.get("macs"), progress=lambda m: _say(events, name, "step", m), **extra)
        out["metrics"] = metrics.model_dump(mode="json")
        out["busy"] = contention.note()
    except Exception as exc:  # noqa: BLE001  (returned: recorded as the candidate's failure)
        out["error"] = error_text(exc)
        out["traceback"] = traceback.format_exc()
        if isinstance(exc, UserCodeError):
            out["user_code"] = str(exc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out["end"] = time.time()
    return out


def runoff_on_target(shared: DataInputs, files: dict[str, bytes], report_json: str, spec: RunoffSpec, constraints,
                     objective: str, *, threads: int) -> dict:
    """The runoff (``pipeline._runoff``) on this, the target, node: the contenders' files written
    under a temporary run folder at their run-relative paths, then timed side by side. Returns
    the record (or the error) with this node's id."""
    out: dict[str, Any] = {"node": _node()}
    tmp = temp_folder("runoff", shared.run_id)
    try:
        data = _on_this_node(shared, files, tmp, threads)
        device = torch.device(shared.device)
        record = runoff(Report.model_validate_json(report_json), objective, spec, constraints, run_dir=tmp,
                        device=device, make_inputs=lambda b: tuple(t.to(device) for t in data.example_inputs(b)))
        out["record"] = None if record is None else record.model_dump(mode="json")
    except Exception as exc:  # noqa: BLE001  (returned: the driver keeps the sequential pick and says why)
        out["error"] = error_text(exc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
