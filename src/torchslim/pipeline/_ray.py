"""``--executor ray``: candidates built in parallel on a Ray cluster, timed alone on the target.

    build    any node, ``build_cpus`` CPUs each, as many at once as the cluster has CPUs:
             steps -> artifact -> score on the held-out split (pipeline._ray_tasks)
    measure  the target node only (the driver's node, or the one node started with the custom
             resource ``torchslim_target``), asking for every CPU of that node so no build runs
             beside it, and one at a time (the driver holds a lock around each): the serial part

The driver is the one writer of the run directory: a build's files come back as bytes with
their SHA-256 digests and are written and checked here. The model and the data are put in the
object store once per run. A build whose worker or node dies is retried by Ray on another node
(``max_retries``); once more than that, the candidate is recorded ``failed`` and the run goes
on. Candidates run in threads of the driver that wait on Ray; the pipeline's own bookkeeping
(the report, resume, the time budget) runs under one lock, so it stays the sequential code of
``pipeline._optimize``.

The time budget (``--time-budget``) is checked as locally when a candidate starts, and every
second while builds are queued: once it is spent (``_search.skip_reason``, the local wording),
no build starts any more, those Ray had queued are cancelled and recorded ``skipped`` with the
reason; builds already running finish, are timed and kept, as a running candidate is locally.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import os
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from torchslim.artifacts import artifact_files, manifest_path, read_manifest
from torchslim.bench import Metrics
from torchslim.core.files import atomic_write_bytes
from torchslim.core.integrity import sha256_file
from torchslim.core.log import say
from torchslim.core.notes import Note
from torchslim.core.rundir import remove_inside
from torchslim.errors import ArtifactError, ConfigError, RefusedError
from torchslim.pipeline import _ray_sweep
from torchslim.pipeline._ray_progress import RayProgress, events_actor
from torchslim.pipeline._ray_tasks import (
    DataInputs,
    ModelInputs,
    SettingsInputs,
    build_candidate,
    measure_artifact,
    runoff_on_target,
)
from torchslim.pipeline._recipe import PlannedCandidate
from torchslim.pipeline._refusals import refused_record
from torchslim.pipeline._runoff import contenders
from torchslim.pipeline._search import SearchSetup, candidate_dir, skip_reason
from torchslim.pipeline._select import honesty_notes, is_within_budget
from torchslim.report import (
    Candidate,
    Execution,
    FallbackRecord,
    LayerChangeRecord,
    Runoff,
    RuntimeRecord,
    totals_line,
)

logger = logging.getLogger("torchslim")

RAY_INSTALL = "pip install 'torchslim[ray]'"
TARGET_RESOURCE = "torchslim_target"
# Files of a user's folder never sent to the workers with its model file (Ray's working_dir).
SEND_EXCLUDES = [".git", ".venv", "__pycache__", "runs", "*.pt", "*.pth", "*.safetensors", "*.onnx", "*.pt2",
                 "*.npz", "*.bin", "*.tslim"]


def import_ray():
    """``ray``, or a ConfigError (exit 2) naming the install command."""
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--executor ray needs Ray, which is not installed here. Install it with "
                          f"{RAY_INSTALL} (on every node of the cluster), or use --executor local.") from None
    return ray


class _Cancelled(BaseException):
    """This run was stopped (Ctrl-C): a candidate thread leaves without recording anything."""


class _NotRun(Exception):
    """A build the time budget cancelled before it started."""


class _Failed(Exception):
    def __init__(self, text: str, detail: str | None = None) -> None:
        super().__init__(text)
        self.text, self.detail = text, detail


def _refused(plan: PlannedCandidate, facts: dict, label: str) -> Candidate:
    """The record of a build refused on a worker, as ``_search.run_candidate`` makes it here."""
    refusal = dict(facts)
    index = refusal.pop("step_index")
    exc = RefusedError(**refusal)
    say(f"{label} {plan.name}: refused: {exc.message}")
    return refused_record(plan, exc, index)


class _Refused(Exception):
    """A build whose technique refused a block up front (errors.RefusedError on the worker)."""

    def __init__(self, facts: dict) -> None:
        super().__init__(facts.get("reason", ""))
        self.facts = facts


def _short(node: str | None) -> str:
    return (node or "?")[:8]


def _blobs(artifact: Path, root: Path) -> dict[str, bytes]:
    """An artifact's files and its manifest, keyed by their paths under ``root``."""
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in [*artifact_files(artifact), manifest_path(artifact)] if p.is_file()}


class RayExecutor:
    """``with RayExecutor(...) as ex:`` joins (or starts) Ray; ``ex.run(plan, setup, label)``
    builds and measures one candidate; ``ex.run_all(calls)`` runs candidate calls in parallel."""

    parallel = True

    def __init__(self, *, address: str | None, model_spec: str | None, build_cpus: int = 1,
                 max_retries: int = 2) -> None:
        self.address, self.model_spec = address, model_spec
        self.build_cpus, self.max_retries = build_cpus, max_retries
        self.run_id = uuid.uuid4().hex[:12]  # two runs on one cluster never share objects
        self._lock = threading.Lock()  # the pipeline's bookkeeping: one candidate thread at a time
        self._held = threading.local()
        self._measure_slot = threading.Lock()  # one measurement at a time
        self._drain_lock = threading.Lock()
        self._cancelled = threading.Event()
        self._stop = threading.Event()
        self._refs: set = set()
        self._builds: dict[str, Any] = {}  # candidate -> its build's ref, while it is in flight
        self._attempts: dict[str, int] = defaultdict(int)
        self._queue = 0  # built candidates waiting for the target
        self._inputs: tuple | None = None
        self._budget: tuple[float, float, list[float]] | None = None
        self._not_run: str | None = None  # set once the time budget is spent
        self.progress = RayProgress()
        self.records: list[Execution] = []

    # -- the cluster ---------------------------------------------------------------------------
    def __enter__(self) -> RayExecutor:
        ray = self.ray = import_ray()
        self._started_ray = not ray.is_initialized()
        if self._started_ray:
            # No dashboard (memory, and a port nobody asked for); worker output stays in Ray's
            # logs (the driver reports what matters through say()).
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if runtime_env := self._runtime_env():
                options["runtime_env"] = runtime_env  # Ray sends a folder only for a whole job
            if self.address:
                options["address"] = self.address
            where = self.address or os.environ.get("RAY_ADDRESS") or "a local Ray instance (embedded)"
            say(f"ray: joining {where}")
            ray.init(**options)
        elif _user_file(self.model_spec) is not None:
            say("ray: already initialized by the caller: its runtime_env must send the model file's folder to the "
                f"workers (runtime_env={{'working_dir': {str(_user_file(self.model_spec).parent)!r}}})")
        try:
            self._setup_cluster()
        except BaseException:
            self._shutdown()
            raise
        return self

    def _setup_cluster(self) -> None:
        ray = self.ray
        self.driver_node = ray.get_runtime_context().get_node_id()
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        marked = [n for n in nodes if n.get("Resources", {}).get(TARGET_RESOURCE)]
        if len(marked) > 1:
            raise ConfigError(f"{len(marked)} Ray nodes have the resource {TARGET_RESOURCE!r}; timings must come "
                              "from one machine: start exactly one node with it (ray start --resources="
                              f"'{{\"{TARGET_RESOURCE}\": 1}}'), or none to measure on the driver's node.")
        target = marked[0] if marked else next((n for n in nodes if n["NodeID"] == self.driver_node), None)
        if target is None:
            raise ConfigError("The driver is not on a node of the Ray cluster (a ray:// client?): start one node "
                              f"with the resource {TARGET_RESOURCE!r} to say where candidates are timed.")
        self.target_node = target["NodeID"]
        self.target_cpus = int(target["Resources"].get("CPU", 0))
        total = sum(int(n["Resources"].get("CPU", 0)) for n in nodes)
        self.slots = max(1, total // max(self.build_cpus, 1)) + 1  # builds in flight, plus one measuring
        say(f"ray: run {self.run_id} on {len(nodes)} node(s), {total} CPUs; candidates are timed on node {_short(self.target_node)}"
            f"{' (the ' + TARGET_RESOURCE + ' node)' if marked else ' (the driver’s node)'} with its "
            f"{self.target_cpus} CPUs, one at a time")
        self._events = events_actor(ray, self.driver_node)
        self.progress.__enter__()
        self._monitor = threading.Thread(target=self._watch, name="torchslim-ray-events", daemon=True)
        self._monitor.start()
        self._build = ray.remote(build_candidate)
        self._measure = ray.remote(measure_artifact)
        self._runoff = ray.remote(runoff_on_target)

    def _runtime_env(self) -> dict | None:
        """The user's model file's folder goes to every worker of the job (their cwd and sys.path)."""
        file = _user_file(self.model_spec)
        if file is None:
            return None
        return {"working_dir": str(file.parent.resolve()), "excludes": SEND_EXCLUDES}

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.cancel()
        self._shutdown()

    def _shutdown(self) -> None:
        self._stop.set()
        monitor = getattr(self, "_monitor", None)
        if monitor is not None:
            monitor.join(timeout=5)
        self.progress.__exit__(None, None, None)
        events = getattr(self, "_events", None)
        if events is not None:
            try:
                self.ray.kill(events)
            except Exception:  # noqa: BLE001  (the cluster may be gone already)
                pass
            self._sweep_nodes()
        if self._started_ray:
            self.ray.shutdown()

    def _sweep_nodes(self, timeout_s: float = 30.0) -> None:
        """Every live node removes the temporary folders of its dead workers (a build killed with
        its node, or force-cancelled by Ctrl-C). Best effort: a node that does not answer in
        ``timeout_s`` sweeps them before its next build."""
        import ray.cloudpickle as cloudpickle
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        try:
            cloudpickle.register_pickle_by_value(_ray_sweep)  # stdlib only: no torch import on the node
            sweep = self.ray.remote(num_cpus=0, max_retries=0)(_ray_sweep.sweep_temp)
            refs = [sweep.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote()
                    for n in self.ray.nodes() if n.get("Alive")]
            ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
            removed = [name for ref in ready for name in self.ray.get(ref)]
            if removed:
                logger.info("removed the temporary folders of dead Ray workers: %s", ", ".join(removed))
        except Exception:  # noqa: BLE001  (a courtesy: never fails the run)
            logger.info("could not sweep the nodes' temporary folders", exc_info=True)

    def cancel(self) -> None:
        """Stop this run's tasks on the cluster (Ctrl-C); the run directory stays resumable."""
        self._cancelled.set()
        for ref in list(self._refs):
            try:
                self.ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001  (finished already, or the cluster is gone)
                pass

    # -- progress -------------------------------------------------------------------------------
    def _watch(self) -> None:
        while not self._stop.wait(1.0):
            self._drain()
            self._check_budget()
            self.progress.tick()

    def _drain(self) -> None:
        with self._drain_lock:
            try:
                items = self.ray.get(self._events.drain.remote(), timeout=30)
            except Exception:  # noqa: BLE001  (progress only)
                return
            for _t, name, kind, node, text in items:
                if kind == "build":
                    self._attempts[name] += 1
                    again = f" (attempt {self._attempts[name]})" if self._attempts[name] > 1 else ""
                    say(f"ray: {name}: building on node {_short(node)}{again}")
                    self.progress.building(name, node)
                elif kind == "measure":
                    say(f"ray: {name}: measuring on node {_short(node)} ({self._queue} waiting to be timed)")
                    self.progress.measuring(name, node)
                else:
                    say(f"ray: {name} [{_short(node)}]: {text}")
                    self.progress.step(name, node, text)

    # -- the time budget --------------------------------------------------------------------------
    def watch_budget(self, started: float, time_budget: float | None, durations: list[float]) -> None:
        """Check ``time_budget`` (seconds since ``started``, perf_counter) while builds are queued."""
        self._budget = None if time_budget is None else (started, time_budget, durations)

    def _check_budget(self) -> None:
        if self._budget is None or self._not_run is not None or self._cancelled.is_set():
            return
        reason = skip_reason(*self._budget)
        if reason is not None:
            self._stop_builds(reason)

    def _stop_builds(self, reason: str) -> None:
        """No build of this run starts any more; those Ray had queued are cancelled."""
        self._not_run = reason
        try:
            begun = set(self.ray.get(self._events.stop.remote(reason), timeout=30))
        except Exception:  # noqa: BLE001  (then a queued build asks the actor itself, and is told)
            logger.info("could not reach the run's events actor to stop its builds", exc_info=True)
            return
        queued = [(name, ref) for name, ref in list(self._builds.items()) if name not in begun]
        for _name, ref in queued:
            try:
                self.ray.cancel(ref)  # not started: Ray drops it from its queue
            except Exception:  # noqa: BLE001  (finished or gone meanwhile)
                pass
        say(f"ray: the time budget is spent: no new build starts ({len(queued)} queued build(s) cancelled; "
            "the running ones finish)")

    # -- running candidates -----------------------------------------------------------------------
    def run_all(self, calls: list[tuple]) -> list:
        """``[fn(*args) for fn, *args in calls]``, each in its own thread, at most ``slots`` at
        once; ``fn`` runs under the bookkeeping lock, released while it waits on the cluster."""
        if not calls:
            return []
        slots = threading.Semaphore(self.slots)
        pool = ThreadPoolExecutor(max_workers=min(len(calls), 64), thread_name_prefix="torchslim-candidate")
        futures = [pool.submit(self._locked, slots, call[0], *call[1:]) for call in calls]
        try:
            # Woken twice a second, not blocked in result(): a Ctrl-C reaches this (the main)
            # thread at once, not when the next candidate happens to finish.
            while True:
                done, running = wait(futures, timeout=0.5, return_when=FIRST_EXCEPTION)
                if not running or any(f.exception() is not None for f in done):
                    break
            return [f.result() for f in futures]
        except BaseException:
            self.cancel()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _locked(self, slots: threading.Semaphore, fn: Callable, *args):
        with slots:
            if self._cancelled.is_set():
                raise _Cancelled()
            with self._lock:
                self._held.on = True
                try:
                    return fn(*args)
                finally:
                    self._held.on = False

    @contextmanager
    def _waiting(self) -> Iterator[None]:
        """Release the bookkeeping lock while this thread waits on the cluster."""
        held = getattr(self._held, "on", False)
        if held:
            self._lock.release()
        try:
            yield
        except self.ray.exceptions.TaskCancelledError:
            if self._not_run is not None and not self._cancelled.is_set():
                raise _NotRun(self._not_run) from None  # a queued build the time budget cancelled
            raise _Cancelled() from None
        finally:
            if held:
                self._lock.acquire()
        if self._cancelled.is_set():
            raise _Cancelled()

    def _get(self, ref):
        self._refs.add(ref)
        try:
            with self._waiting():
                return self.ray.get(ref)
        finally:
            self._refs.discard(ref)

    def _put_inputs(self, setup: SearchSetup) -> tuple:
        if self._inputs is None:
            data_ref = self._data_ref(setup.data, setup.device, setup.batch_sizes, setup.reference)
            blob = _pickle(setup.baseline_model)
            model_ref = self.ray.put(ModelInputs(model_blob=blob, example_inputs=tuple(t.cpu() for t in setup.example_inputs),
                                                 seed=setup.seed, max_accuracy_drop=setup.max_accuracy_drop,
                                                 input_names=setup.input_names))
            self._inputs = (model_ref, data_ref)
        return self._inputs

    def _data_ref(self, data, device, batch_sizes, reference):
        if not hasattr(self, "_data"):
            self._data = self.ray.put(DataInputs(
                run_id=self.run_id, data_blob=_pickle(data), device=str(device), batch_sizes=list(batch_sizes),
                reference=reference.cpu() if reference is not None else None, user_file=_user_module(self.model_spec)))
        return self._data

    def run(self, plan: PlannedCandidate, setup: SearchSetup, label: str) -> Candidate:
        """Build ``plan`` somewhere, write its files here, time it on the target: its record."""
        if self._cancelled.is_set():
            raise _Cancelled()
        if self._not_run is not None:
            return self._skipped(plan, self._not_run, label)
        submitted = time.time()
        record = Candidate(name=plan.name, steps=plan.step_strings(), status="ok", refined_from=plan.refined_from)
        execution = Execution(submitted=round(submitted, 3))
        try:
            model_ref, data_ref = self._put_inputs(setup)
            facts, files_ref = self._build_remote(plan, model_ref, data_ref)
            execution.built_on, execution.build_start, execution.build_end = facts["node"], facts["start"], facts["end"]
            if facts.get("refused"):
                raise _Refused(facts["refused"])
            if facts.get("error"):
                raise _Failed(facts["error"], facts.get("traceback"))
            artifact = self._receive(plan.name, facts, self._get(files_ref), setup.run_dir)
            say(f"{label} {plan.name}: built on node {_short(facts['node'])} in {facts['end'] - facts['start']:.1f} s; "
                "files written and verified")
            known = {"accuracy": facts["accuracy"] if _takes_known_accuracy(setup.measure_fn) else None,
                     "params": facts["params"], "macs": facts["macs"]}
            settings = SettingsInputs(fixed=plan.runtime_settings, tuning=setup.tuning, objective=setup.objective)
            out = self._measure_remote(data_ref, files_ref, facts["artifact"], facts["runtime"], plan.name,
                                       setup.measure_fn, known, settings)
            execution.measured_on, execution.measure_start, execution.measure_end = out["node"], out["start"], out["end"]
            if out.get("error"):
                raise _Failed(out["error"], out.get("traceback"))
            self._settings_arrived(artifact, out["manifest"])
            _fill(record, facts, out, artifact, setup)
            say(f"{label} {plan.name}: ok, {setup.data.metric} {record.metrics.accuracy * 100:.2f}%, "
                f"{'within' if record.within_budget else 'outside'} budget")
        except _NotRun as e:
            self.progress.done(plan.name)
            return self._skipped(plan, str(e), label)
        except _Refused as e:
            record = _refused(plan, e.facts, label)
        except _Failed as e:
            self._fail(record, e.text, e.detail, label)
        except self.ray.exceptions.RayError as e:
            if self._cancelled.is_set():
                raise _Cancelled() from None
            self._fail(record, _lost(e, self.max_retries), None, label)
        self._drain()
        self.progress.done(plan.name)
        execution.attempts = max(self._attempts.get(plan.name, 1), 1)
        execution.fill_durations()
        record.execution = execution
        record.duration_s = round(time.time() - submitted, 3)
        # What the time budget's "a candidate takes ~N s" counts: the work a candidate needs once
        # it starts (its build and its timing), not the time it queued behind the others.
        work = sum(x for x in (execution.build_s, execution.measure_s) if x is not None)
        setup.durations.append(round(work, 3) if work > 0 else record.duration_s)
        self.records.append(execution)
        return record

    def _build_remote(self, plan: PlannedCandidate, model_ref, data_ref) -> tuple[dict, Any]:
        """(the build's facts, the ref of its files); _NotRun when the time budget stopped it."""
        build_ref, files_ref = self._build.options(
            num_cpus=self.build_cpus, max_retries=self.max_retries, num_returns=2,
        ).remote(plan, model_ref, data_ref, self.build_cpus, self._events)
        self._builds[plan.name] = build_ref  # cancelled while queued once the time budget is spent
        try:
            facts = self._get(build_ref)
        finally:
            self._builds.pop(plan.name, None)
        if facts.get("not_run"):
            raise _NotRun(facts["not_run"])
        return facts, files_ref

    def _skipped(self, plan: PlannedCandidate, reason: str, label: str) -> Candidate:
        """A candidate the time budget left out: the record ``_optimize._run_one`` makes locally."""
        say(f"{label} {plan.name}: skipped ({reason})")
        return Candidate(name=plan.name, steps=plan.step_strings(), status="skipped", error=reason,
                         within_budget=False, refined_from=plan.refined_from)

    def _settings_arrived(self, artifact: Path, manifest: bytes) -> None:
        """The manifest the target wrote its runtime settings into replaces the build's (the
        artifact's files, and so their digests, do not change: checked again here)."""
        atomic_write_bytes(manifest_path(artifact), manifest)
        try:
            read_manifest(artifact)
        except ArtifactError as e:
            raise _Failed(f"the manifest the target sent back for {artifact.name} is not valid: {e.message}") from None

    def _fail(self, record: Candidate, text: str, detail: str | None, label: str) -> None:
        record.status, record.error, record.within_budget = "failed", text, False
        record.metrics, record.artifact = None, None
        logger.info("candidate %s failed:\n%s", record.name, detail or text)  # the traceback goes to run.log
        say(f"{label} {record.name}: failed: {text}")

    def _measure_remote(self, data_ref, files_ref, artifact: str, runtime: str, name: str, measure_fn, known,
                        settings: SettingsInputs | None = None) -> dict:
        return self._on_target(self._measure, data_ref, files_ref, artifact, runtime, name=name, measure_fn=measure_fn,
                               threads=max(self.target_cpus, 1), known=known, events=self._events, settings=settings)

    def _on_target(self, task, *args, **kwargs) -> dict:
        """Run ``task`` on the target node, alone there (every CPU of it, one such task at a time),
        after the measurements queued before it; its result."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self._queue += 1
        self.progress.queued(self._queue)
        try:
            with self._waiting():
                self._measure_slot.acquire()
        finally:
            self._queue -= 1
            self.progress.queued(self._queue)
        try:
            ref = task.options(
                num_cpus=self.target_cpus, max_retries=1,
                scheduling_strategy=NodeAffinitySchedulingStrategy(self.target_node, soft=False),
            ).remote(*args, **kwargs)
            return self._get(ref)
        finally:
            self._measure_slot.release()

    def _receive(self, name: str, facts: dict, files: dict[str, bytes], run_dir: Path) -> Path:
        """Write a build's files into ``candidates/<name>/`` and check each against its digest."""
        work_dir = candidate_dir(run_dir, name)
        remove_inside(work_dir, run_dir)  # a link is removed, never followed; nothing outside the run
        work_dir.mkdir(parents=True)
        root = work_dir.resolve()
        if set(files) != set(facts["digests"]):
            raise _Failed(f"the build of {name} sent {len(files)} file(s) for {len(facts['digests'])} digest(s)")
        for rel, blob in files.items():
            path = (work_dir / rel).resolve()
            if root not in path.parents:
                raise _Failed(f"the build of {name} sent a file outside its folder ({rel!r}); refused")
            atomic_write_bytes(path, blob)
            if sha256_file(path) != facts["digests"][rel]:
                raise _Failed(f"{rel} of {name} does not match the SHA-256 digest its build computed: "
                              "the bytes were damaged on the way from the worker")
        artifact = work_dir / facts["artifact"]
        try:
            read_manifest(artifact)  # and the artifact's own manifest digests
        except ArtifactError as e:
            raise _Failed(e.message) from None
        return artifact

    # -- the baseline -------------------------------------------------------------------------------
    def measure_baseline(self, artifact: Path, bundle, reference, opts) -> Candidate:
        """Time the baseline on the target, the same way as every candidate."""
        data_ref = self._data_ref(bundle, opts.device, opts.batch_sizes, reference)
        files_ref = self.ray.put(_blobs(artifact, artifact.parent))
        say("ray: measuring the baseline on the target")
        out = self._measure_remote(data_ref, files_ref, artifact.name, "eager", "baseline", opts.measure_fn,
                                   {"accuracy": None, "params": None, "macs": None})
        self.progress.done("baseline")
        if out.get("error"):
            logger.info("baseline measurement failed:\n%s", out.get("traceback"))
            if out.get("user_code"):  # the user's file or environment, not torchslim: exit 2
                raise ConfigError(out["user_code"])
            raise RuntimeError(f"measuring the baseline on the target failed: {out['error']}")
        execution = Execution(measured_on=out["node"], measure_start=out["start"], measure_end=out["end"])
        execution.fill_durations()
        self.records.append(execution)
        notes = [Note(kind="busy_machine", text=out["busy"])] if out.get("busy") else []
        return Candidate(name="baseline", steps=[], status="ok", within_budget=True, artifact=artifact.name,
                         metrics=Metrics.model_validate(out["metrics"]), notes=notes, execution=execution)

    # -- the runoff ---------------------------------------------------------------------------------
    def runoff(self, report, spec, opts, bundle, run_dir: Path) -> Runoff | None:
        """The runoff on the target, once every build is done: the contenders' files go there
        and are timed side by side like every measurement, alone on that node."""
        close = contenders(report, opts.objective, spec, opts.constraints)
        if not close:
            return None
        files: dict[str, bytes] = {}
        for c in ([report.baseline] if opts.objective == "balanced" else []) + close:
            files |= _blobs(run_dir / c.artifact, run_dir)
        say(f"ray: runoff of {', '.join(c.name for c in close)} on the target")
        out = self._on_target(self._runoff, self._data_ref(bundle, opts.device, opts.batch_sizes, None),
                              self.ray.put(files), report.model_dump_json(), spec, opts.constraints, opts.objective,
                              threads=max(self.target_cpus, 1))
        if out.get("error"):
            raise RuntimeError(f"on node {_short(out.get('node'))}: {out['error']}")
        record = None if out.get("record") is None else Runoff.model_validate(out["record"] | {"node": out["node"]})
        if record is not None:
            say(record.line())
        return record

    # -- the totals -------------------------------------------------------------------------------------
    def finish(self, report) -> None:
        """The run's totals (report.json ``executor``) and the line under the table."""
        built = [e for e in self.records if e.build_s is not None]
        measured = [e for e in self.records if e.measure_s is not None]
        nodes = sorted({e.built_on for e in built if e.built_on})
        build_span = (max(e.build_end for e in built) - min(e.build_start for e in built)) if built else 0.0
        totals = {
            "kind": "ray", "run_id": self.run_id, "target_node": self.target_node, "build_nodes": nodes,
            "build_s": round(sum(e.build_s for e in built), 3), "build_span_s": round(build_span, 3),
            "measure_s": round(sum(e.measure_s for e in measured), 3),
            "wait_s": round(sum(e.wait_s or 0.0 for e in built), 3),
        }
        report.executor = totals
        say(totals_line(totals))


def _fill(record: Candidate, facts: dict, out: dict, artifact: Path, setup: SearchSetup) -> None:
    """A built and timed candidate's record, from what its build and its measurement sent back."""
    metrics = Metrics.model_validate(out["metrics"])
    record.artifact = str(artifact.relative_to(setup.run_dir))
    record.metrics = metrics
    record.fallback = FallbackRecord.model_validate(facts["facts"]["fallback"]) if facts["facts"].get("fallback") else None
    record.runtime_settings = RuntimeRecord.model_validate(out["runtime_settings"]) if out.get("runtime_settings") else None
    record.changes = [LayerChangeRecord.model_validate(c) for c in facts["facts"].get("changes", [])]
    record.within_budget = is_within_budget(setup.baseline.metrics, metrics, setup.max_accuracy_drop)
    record.notes = [Note(kind="technique", text=n) for n in [*facts["notes"], *out.get("notes", [])]]
    if out.get("busy"):
        record.notes.append(Note(kind="busy_machine", text=out["busy"]))
    record.notes += honesty_notes(setup.baseline.metrics, metrics)


def _lost(e: Exception, retries: int) -> str:
    kind = type(e).__name__
    if kind in ("WorkerCrashedError", "NodeDiedError", "LocalRayletDiedError", "ObjectLostError", "OwnerDiedError",
                "ObjectReconstructionFailedError"):
        return (f"node lost {retries + 1} times: the worker or node building it died ({kind}), and Ray's "
                f"{retries} retries on other nodes died too")
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"the Ray cluster failed it ({kind}: {first[:300]})"


def _takes_known_accuracy(measure_fn) -> bool:
    try:
        return "known_accuracy" in inspect.signature(measure_fn).parameters
    except (TypeError, ValueError):
        return False


def _pickle(obj) -> bytes:
    import ray.cloudpickle as cloudpickle

    return cloudpickle.dumps(obj)


def _user_file(spec: str | None) -> Path | None:
    if not spec or ":" not in spec:
        return None
    module_part = spec.rsplit(":", 1)[0]
    if not (module_part.endswith(".py") or "/" in module_part):
        return None
    return Path(module_part)


def _user_module(spec: str | None) -> tuple[str, str, str] | None:
    """(the name the driver imported the user's file under, its file name, the spec)."""
    file = _user_file(spec)
    if file is None:
        return None
    resolved = file.resolve()
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if name.startswith("_torchslim_user_") and path and Path(path).resolve() == resolved:
            return name, file.name, spec
    # specs._import_factory's name for it (a resumed run that has not imported it yet).
    return "_torchslim_user_" + hashlib.sha1(str(resolved).encode()).hexdigest()[:12], file.name, spec


