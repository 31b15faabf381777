"""``--executor ray`` on a real multi-node Ray cluster on this machine (ray.cluster_utils):
a head (the driver's node) and two worker nodes of one CPU each, one of them the target
(the ``torchslim_target`` resource). One cluster serves the whole module; the tests that
connect this process to it share one connection (``driver``: one Ray job, so its workers are
started once); the node-loss test runs last because it removes a node.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from torchslim.pipeline import load_recipe

pytestmark = pytest.mark.slow

SRC = str(Path(__file__).resolve().parents[2] / "src")
MB = 1024 * 1024
TINY = {"candidates": [
    {"name": "pruned", "steps": [{"prune": {"method": "channel", "ratio": 0.5}}]},
    {"name": "onnx-int8", "steps": [{"export": {"format": "onnx", "quantize": "dynamic"}}], "runtime": "onnxruntime"},
    {"name": "shared", "steps": [{"prune": {"method": "magnitude", "ratio": 0.8}}, {"share": {"bits": 5}}]},
]}
TUNED = {**TINY, "tuning": {"max_tries": 2, "max_seconds": 3.0}}  # ~1 s of timing; 3 s bounds loading under load


def _quick_measure():
    from torchslim.bench import measure

    return functools.partial(measure, target_s=0.2)  # a shorter timing: the tests check placement, not speed


@pytest.fixture(scope="module")
def cluster():
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    small = {"num_cpus": 1, "object_store_memory": 100 * MB}
    c = Cluster(initialize_head=True, head_node_args={**small, "include_dashboard": False})
    target = c.add_node(**small, resources={"torchslim_target": 1})
    worker = c.add_node(**small)
    c.wait_for_nodes()
    yield c, target, worker
    if ray.is_initialized():
        ray.shutdown()
    c.shutdown()


@pytest.fixture(scope="module")
def driver(cluster):
    """This process connected to the cluster (in the main thread: a driver that connects from
    another thread was, now and then, declared dead by the GCS as it registered)."""
    import ray

    c, _, _ = cluster
    ray.init(address=c.address, include_dashboard=False, log_to_driver=False)
    yield cluster
    ray.shutdown()


def _nap_table():
    """A fake step that sleeps on the worker (defined in a function: cloudpickle sends it by value)."""
    def nap(model, config, ctx):
        import time as _time

        from torchslim.core.step import StepOutput

        _time.sleep(config["seconds"])
        return StepOutput(model=model)

    return {"nap": (lambda o: o, nap)}


def _fake_measure():
    """Metrics without a clock worth the name (the budget and Ctrl-C tests time nothing)."""
    def measure(fn, data, *, artifact, runtime, batch_sizes, device, reference=None, params=None, macs=None, **_kw):
        from pathlib import Path as _Path

        from torchslim.bench._measure import Latency, Metrics
        from torchslim.data import accuracy

        return Metrics(accuracy=accuracy(fn, data.test), size_bytes=_Path(artifact).stat().st_size, params=params or 0,
                       macs=macs, latency_ms={str(b): Latency(p50=1.0, p95=1.1, cv=0.01) for b in batch_sizes},
                       throughput_per_s=1000.0, peak_memory_bytes=1, runtime=runtime)

    return measure


def _temp_folders(run_id: str) -> list[str]:
    import tempfile

    return [p.name for p in Path(tempfile.gettempdir()).glob(f"torchslim-*-{run_id}-*")]


def _wait_for(predicate, timeout: float, what: str, alive=lambda: True):
    deadline = time.time() + timeout
    while time.time() < deadline and alive():
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{'timed out' if alive() else 'the run ended'} waiting for {what}")


def _log(out: Path) -> str:
    return (out / "run.log").read_text() if (out / "run.log").exists() else ""


def _intervals(report: dict) -> list[tuple[float, float, str]]:
    out = []
    for c in [report["baseline"], *report["candidates"]]:
        e = c.get("execution") or {}
        if e.get("measure_start") is not None:
            out.append((e["measure_start"], e["measure_end"], e["measured_on"]))
    return sorted(out)


def _same_tuning(a, b, ray_dir: Path) -> None:
    """The runtime-settings record of one candidate, local vs ray, timings aside."""
    from torchslim.artifacts import read_manifest
    from torchslim.runtime._settings import MANIFEST_KEY

    ra, rb = a.runtime_settings, b.runtime_settings
    assert (ra is None) == (rb is None), b.name
    if ra is None:
        return
    assert (rb.runtime, rb.source, rb.effective_precision) == (ra.runtime, ra.source, ra.effective_precision), b.name
    if ra.source != "tuned":
        assert rb.settings == ra.settings, b.name
        return
    same = ("objective", "batch_size", "max_tries", "max_seconds", "min_gain")
    assert rb.tuning.model_dump(include=set(same)) == ra.tuning.model_dump(include=set(same)), b.name
    assert [t.settings for t in rb.tuning.tries] == [t.settings for t in ra.tuning.tries], b.name
    chosen = [t for t in rb.tuning.tries if t.chosen]
    assert len(chosen) == 1 and chosen[0].settings == rb.settings and chosen[0].p50_ms is not None, b.name
    # the manifest the driver wrote holds the settings the target chose: a user's load() runs them
    assert read_manifest(ray_dir / b.artifact).extra[MANIFEST_KEY] == rb.settings, b.name
    assert any("runtime settings tuned on" in n for n in b.note_texts()) == any(
        "runtime settings tuned on" in n for n in a.note_texts()), b.name


def test_ray_runs_a_recipe_like_local_and_times_only_on_the_target(cluster, tmp_path, monkeypatch, capsys):
    import torchslim
    from torchslim.artifacts import read_manifest
    from torchslim.bench import set_threads
    from torchslim.pipeline import _optimize

    c, target, _ = cluster
    # The target node has 1 CPU and tunes with 1 thread; which settings are worth a try depends
    # on the thread count, so the local run gets the same one.
    monkeypatch.setattr(_optimize, "set_threads", lambda threads=None: set_threads(threads or 1))
    measure = torchslim.MeasureOptions(batch_sizes=(1,), measure_fn=_quick_measure())
    local = torchslim.optimize("digits-mlp", "digits", TUNED, run=torchslim.RunOptions(out=tmp_path / "local", html=False),
                               measure=measure)
    on_ray = torchslim.optimize("digits-mlp", "digits", TUNED, measure=measure, run=torchslim.RunOptions(
        out=tmp_path / "ray", executor="ray", ray_address=c.address))
    assert [x.name for x in on_ray.candidates] == [x.name for x in local.candidates] == ["pruned", "onnx-int8", "shared"]
    for a, b in zip(local.candidates, on_ray.candidates, strict=True):
        assert a.status == b.status == "ok", (a.error, b.error)
        assert b.metrics.accuracy == a.metrics.accuracy, b.name  # same seed, same steps, same held-out split
        assert b.metrics.size_bytes == a.metrics.size_bytes, b.name
        assert b.execution.built_on and b.execution.build_s > 0 and b.execution.attempts == 1
        read_manifest(tmp_path / "ray" / b.artifact)  # written by the driver, digests verified
        _same_tuning(a, b, tmp_path / "ray")
    assert on_ray.candidate("onnx-int8").runtime_settings.source == "tuned"  # the comparison compared a tuning
    html = (tmp_path / "ray" / "report.html").read_text()
    assert 'id="executor-totals"' in html and "measured on the target in" in html
    assert html.count('class="execution"') == 4  # where each candidate (and the baseline) was built and timed
    assert f"built on node {on_ray.candidates[0].execution.built_on[:8]}" in html
    assert "ray: now building" in (tmp_path / "ray" / "run.log").read_text()  # every running candidate, the queue
    from torchslim.cli import run

    assert run(["report", str(tmp_path / "ray")]) == 0  # the totals line again under the table
    assert "measured on the target in" in capsys.readouterr().out
    report = json.loads((tmp_path / "ray" / "report.json").read_text())
    intervals = _intervals(report)
    assert len(intervals) == 4  # the baseline is timed the same way
    assert {node for _, _, node in intervals} == {target.node_id}
    for (_, end, _), (start, _, _) in zip(intervals, intervals[1:], strict=False):
        assert end <= start, "two measurements overlapped on the target"
    assert report["executor"]["target_node"] == target.node_id
    assert local.baseline.execution is None and "executor" not in json.loads((tmp_path / "local" / "report.json").read_text())


USER_NET = '''
from blocks import hidden  # importable only from this folder: the workers get it from Ray's working_dir
import torch.nn as nn


def make():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden()), nn.ReLU(), nn.Linear(hidden(), 10))
'''


def _cli(args: list[str], cwd: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen([sys.executable, "-m", "torchslim", "optimize", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_driver_killed_then_resume_keeps_finished_candidates_and_user_code_reaches_workers(cluster, tmp_path):
    import torch

    c, _, _ = cluster
    user = tmp_path / "project"
    user.mkdir()
    (user / "blocks.py").write_text("def hidden():\n    return 24\n")
    (user / "net.py").write_text(textwrap.dedent(USER_NET))
    (user / "recipe.yaml").write_text(json.dumps(TINY))
    sys.path.insert(0, str(user))
    try:
        spec = __import__("importlib").util.spec_from_file_location("ray_test_user_net", user / "net.py")
        module = __import__("importlib").util.module_from_spec(spec)
        spec.loader.exec_module(module)
        torch.manual_seed(0)
        torch.save(module.make().state_dict(), user / "w.pt")
    finally:
        sys.path.remove(str(user))
    run = tmp_path / "run"
    args = ["--model", "net.py:make", "--weights", "w.pt", "--recipe", "recipe.yaml", "--batch-sizes", "1",
            "--max-accuracy-drop", "100", "--out", str(run), "--executor", "ray", "--ray-address", c.address]
    first = _cli(args, user)
    deadline = time.time() + 240
    kept: dict = {}
    while time.time() < deadline and first.poll() is None:
        try:
            kept = {x["name"]: x for x in json.loads((run / "report.json").read_text())["candidates"]}
        except (OSError, ValueError, KeyError):
            kept = {}
        if kept:
            break
        time.sleep(0.1)
    assert first.poll() is None, f"the run ended before it could be killed:\n{first.stdout.read()}"
    first.send_signal(signal.SIGKILL)
    first.wait()
    kept = {x["name"]: x for x in json.loads((run / "report.json").read_text())["candidates"]}
    assert kept and all(x["status"] == "ok" for x in kept.values()), kept
    mtimes = {name: (run / x["artifact"]).stat().st_mtime_ns for name, x in kept.items()}

    second = _cli([*args, "--resume"], user)
    out, _ = second.communicate(timeout=300)
    assert second.returncode == 0, out
    report = json.loads((run / "report.json").read_text())
    assert [x["name"] for x in report["candidates"]] == ["pruned", "onnx-int8", "shared"]
    for x in report["candidates"]:
        assert x["status"] == "ok", x["error"]
        assert x["execution"]["built_on"]
    for name, old in kept.items():  # kept, never built again
        new = next(x for x in report["candidates"] if x["name"] == name)
        assert new["execution"] == old["execution"]
        assert (run / new["artifact"]).stat().st_mtime_ns == mtimes[name]
        assert f"ray: {name}: building" not in out
    assert "already measured in this run directory; kept" in out
    assert "measured on the target in" in out  # the run's totals under the table


def test_ray_missing_exits_2_naming_the_install_command(tmp_path):
    code = ("import sys; sys.modules['ray'] = None\n"
            "from torchslim.cli import main\n"
            f"sys.argv = ['torchslim', 'optimize', '--model', 'digits-mlp', '--executor', 'ray', '--out', {str(tmp_path / 'r')!r}]\n"
            "main()\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "pip install 'torchslim[ray]'" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "r").exists()  # nothing written before the check


def test_an_unknown_executor_or_an_address_without_ray_is_refused(tmp_path):
    import torchslim
    from torchslim.errors import ConfigError

    with pytest.raises(ConfigError, match="--executor 'spark': Input should be 'local' or 'ray'"):
        torchslim.optimize("digits-mlp", recipe=TINY, run={"executor": "spark", "out": tmp_path / "a"})
    with pytest.raises(ConfigError, match="only used with --executor ray"):
        torchslim.optimize("digits-mlp", recipe=TINY, run=torchslim.RunOptions(ray_address="127.0.0.1:6379",
                                                                               out=tmp_path / "b"))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_worker_that_cannot_import_the_model_file_names_it(tmp_path, monkeypatch):
    from torchslim.pipeline._ray_tasks import UserCodeError, _import_user_file

    (tmp_path / "net.py").write_text("import not_installed_anywhere\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserCodeError, match=r"cannot import the model file 'src/net.py'.*not_installed_anywhere"):
        _import_user_file("_torchslim_user_test", "net.py", "src/net.py:make")
    assert "_torchslim_user_test" not in sys.modules
    assert not __import__("ray").is_initialized()  # naming the node started no Ray instance here


def test_files_from_a_build_are_checked_against_their_digests_on_arrival(tmp_path):
    import hashlib

    from torchslim.pipeline._ray import RayExecutor, _Failed

    executor = RayExecutor(address=None, model_spec=None)  # not entered: _receive needs no cluster
    blob = b"weights"
    facts = {"artifact": "model.onnx", "digests": {"model.onnx": hashlib.sha256(b"other bytes").hexdigest()}}
    with pytest.raises(_Failed, match="damaged on the way"):
        executor._receive("c", facts, {"model.onnx": blob}, tmp_path)
    facts["digests"] = {"../escape.onnx": hashlib.sha256(blob).hexdigest()}
    with pytest.raises(_Failed, match="outside its folder"):
        executor._receive("c", facts, {"../escape.onnx": blob}, tmp_path)
    assert not (tmp_path / "candidates" / "escape.onnx").exists()


def test_two_runs_on_one_worker_keep_their_own_model_and_data(tmp_path):
    import torch
    import torch.nn as nn

    from torchslim.pipeline._ray import _pickle
    from torchslim.pipeline._ray_tasks import DataInputs, _unpack

    def inputs(run_id: str, blob: bytes) -> DataInputs:
        return DataInputs(run_id=run_id, data_blob=blob, device="cpu", batch_sizes=[1], reference=None, user_file=None)

    small, large = _pickle(nn.Linear(2, 3)), _pickle(nn.Linear(4, 5))
    a, b = inputs("aaaa", small), inputs("bbbb", large)
    first, second = _unpack(a, small, "model"), _unpack(b, large, "model")  # one worker process, two runs
    assert first.weight.shape == torch.Size([3, 2]) and second.weight.shape == torch.Size([5, 4])
    assert _unpack(a, large, "model") is first  # cached per run, never another run's object


def test_a_sweep_removes_only_the_folders_of_dead_processes(tmp_path):
    from torchslim.pipeline._ray_sweep import _host, sweep_temp

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = _host()
    gone = tmp_path / f"torchslim-build-abc123-{host}-{int(dead.stdout)}-x1"
    mine = tmp_path / f"torchslim-build-abc123-{host}-{os.getpid()}-x2"
    elsewhere = tmp_path / f"torchslim-build-abc123-00000000-{int(dead.stdout)}-x3"  # another host sharing the folder
    other = tmp_path / "torchslim-build-olderformat"
    for d in (gone, mine, elsewhere, other):
        (d / "model").mkdir(parents=True)
    assert sweep_temp(tmp_path) == [gone.name]
    assert not gone.exists() and mine.is_dir() and elsewhere.is_dir() and other.is_dir()


def test_the_progress_summary_names_every_running_candidate_and_the_queue():
    from torchslim.pipeline._ray_progress import RayProgress

    progress = RayProgress(live=False, every_s=0.0)
    progress.building("a", "1a2b3c4d5e")
    progress.step("a", "1a2b3c4d5e", "step 1/2 prune(method=channel)")
    progress.building("b", "5e6f7a8b9c")
    progress.measuring("c", "9c0d1e2f3a")
    progress.queued(2)
    assert progress.summary() == ("building 2: a [1a2b3c4d: step 1/2 prune(method=channel)], b [5e6f7a8b: building]; "
                                  "measuring: c [9c0d1e2f]; 2 waiting to be timed")
    progress.done("a")
    progress.done("c")
    progress.queued(0)
    assert progress.summary() == "building 1: b [5e6f7a8b: building]; 0 waiting to be timed"


def test_a_worker_that_cannot_import_the_model_file_stops_the_run_naming_it(driver, tmp_path):
    import torch
    import torch.nn as nn

    import torchslim
    from torchslim.errors import ConfigError

    user = tmp_path / "project"
    user.mkdir()
    (user / "net.py").write_text("import torch.nn as nn\n\n\ndef make():\n"
                                 "    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))\n")
    torch.save(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).state_dict(), user / "w.pt")
    out = tmp_path / "run"
    # Ray was started by the caller without a runtime_env: the file's folder never reached the workers.
    with pytest.raises(ConfigError, match=r"cannot import the model file '.*project/net.py' \(FileNotFoundError"):
        torchslim.optimize(f"{user}/net.py:make", "digits", TINY,
                           run=torchslim.RunOptions(weights=str(user / "w.pt"), out=out, executor="ray"),
                           measure=torchslim.MeasureOptions(batch_sizes=(1,), measure_fn=_fake_measure()))
    assert not out.exists()  # stopped before the first result: --out left as it was found


def test_a_spent_time_budget_cancels_queued_builds_and_keeps_the_finished_ones(driver, tmp_path, monkeypatch):
    import torchslim
    from torchslim.pipeline import _search

    class Clock:  # _search's clock (the budget's), pushed past the budget when this test says so
        offset = 0.0

        def perf_counter(self) -> float:
            return time.perf_counter() + self.offset

    clock = Clock()
    monkeypatch.setattr(_search, "time", clock)
    # 3 CPUs: three builds run, a fourth is queued by Ray, the fifth waits in the driver
    recipe = {"candidates": [{"name": f"nap-{i}", "steps": [{"nap": {"seconds": 10}}]} for i in range(5)]}
    out = tmp_path / "run"
    result: dict = {}

    def run():
        try:
            result["report"] = torchslim.optimize(
                "digits-mlp", "digits", load_recipe(recipe, step_table=_nap_table()),
                run=torchslim.RunOptions(out=out, html=False, executor="ray", time_budget=1000),
                measure=torchslim.MeasureOptions(batch_sizes=(1,), measure_fn=_fake_measure()))
        except BaseException as e:  # noqa: BLE001  (re-raised by the assertion below)
            result["error"] = e

    thread = threading.Thread(target=run)
    thread.start()
    _wait_for(lambda: _log(out).count(": building on node") >= 3, 120, "three builds to start", thread.is_alive)
    clock.offset = 2000.0  # the budget is spent while three builds nap and one is queued
    thread.join(timeout=120)
    assert "error" not in result, result.get("error")
    report, log = result["report"], _log(out)
    began = {x.name for x in report.candidates if f"ray: {x.name}: building on node" in log}
    ok = {x.name for x in report.candidates if x.status == "ok"}
    skipped = [x for x in report.candidates if x.status == "skipped"]
    assert ok == began and len(ok) >= 3, (ok, began)  # what started finished, was timed and kept
    assert len(skipped) == 5 - len(ok) >= 1
    for x in skipped:  # the local executor's words; nothing of theirs written
        assert x.error.startswith("not run: the time budget of 1000 s was spent"), x.error
        assert x.artifact is None and not (out / "candidates" / x.name).exists()
    assert "queued build(s) cancelled" in log


def test_ctrl_c_cancels_the_runs_tasks_and_leaves_it_resumable(driver, tmp_path):
    import _thread

    import ray

    import torchslim
    from torchslim.pipeline._optimize import prepare_run_dir
    from torchslim.pipeline._ray_sweep import sweep_temp

    recipe = {"candidates": [{"name": f"long-{i}", "steps": [{"nap": {"seconds": 120}}]} for i in range(2)]}
    out = tmp_path / "run"

    def interrupt():
        _wait_for(lambda: ": building on node" in _log(out), 120, "a build to start")
        _thread.interrupt_main()  # what Ctrl-C does to the optimize call

    helper = threading.Thread(target=interrupt, daemon=True)
    helper.start()
    with pytest.raises(KeyboardInterrupt):
        torchslim.optimize("digits-mlp", "digits", load_recipe(recipe, step_table=_nap_table()),
                           run=torchslim.RunOptions(out=out, html=False, executor="ray"),
                           measure=torchslim.MeasureOptions(batch_sizes=(1,), measure_fn=_fake_measure()))
    helper.join()
    # This process is still connected (the Ray job lives on): only cancelling frees the CPUs the
    # two-minute builds held.
    total = ray.cluster_resources()["CPU"]
    _wait_for(lambda: ray.available_resources().get("CPU", 0) == total, 30, "the cancelled builds to free their CPUs")
    run_id = _log(out).split("ray: run ", 1)[1].split(" ", 1)[0]

    def swept() -> bool:  # the end of the run swept them, or (a killed worker not yet dead then) the next build does
        sweep_temp()
        return not _temp_folders(run_id)

    _wait_for(swept, 30, "the killed builds' folders to be removed")
    run, previous = prepare_run_dir(out, resume=True)  # unlocked, and its report resumes
    run.release()
    assert previous is not None and previous.baseline.status == "ok" and previous.candidates == []


def test_the_edge_search_runs_its_families_in_parallel_on_ray(driver, tmp_path):
    import torchslim

    def cliff(model, config, ctx):  # accuracy falls off a cliff above ratio 0.6 (tests/pipeline/test_edge_search.py)
        import torch as _torch

        from torchslim.core.step import StepOutput

        if config["ratio"] > 0.6:
            with _torch.no_grad():
                for param in model.parameters():
                    param.zero_()
        return StepOutput(model=model)

    recipe = {"candidates": [{"name": "p", "steps": [{"prune": {"ratio": 0.9}}]},
                             {"name": "q", "steps": [{"prune": {"ratio": 0.8}}]}], "search": {"max_tries": 2}}
    report = torchslim.optimize("digits-mlp", "digits", load_recipe(recipe, step_table={"prune": (lambda o: o, cliff)}),
                                run=torchslim.RunOptions(out=tmp_path / "run", html=False, executor="ray"),
                                measure=torchslim.MeasureOptions(batch_sizes=(1,), measure_fn=_fake_measure()))
    tries = {fam: [x for x in report.candidates if x.refined_from == fam] for fam in ("p", "q")}
    # the bisection's path, as the local executor takes it (test_edge_search): 0.684 out, 0.438 in
    assert [(x.name, x.within_budget) for x in tries["p"]] == [("p.ratio-0.6838", False), ("p.ratio-0.4377", True)]
    assert len(tries["q"]) == 2 and all(x.status == "ok" and x.execution.built_on for x in tries["p"] + tries["q"])
    first_p, first_q = tries["p"][0].execution, tries["q"][0].execution
    # side by side: each family's first try was sent before the other's had been built
    assert first_q.submitted < first_p.build_end and first_p.submitted < first_q.build_end


def test_the_runoff_runs_on_the_target_node_and_settles_best(driver, tmp_path):
    """The runoff (docs/optimize.md) re-times the close contenders on the target, like every
    measurement: torchslim's own measure (a custom measure_fn skips the runoff)."""
    import torchslim

    _, target, _ = driver
    onnx = {"runtime": "onnxruntime"}
    recipe = {"candidates": [{"name": "fp32", "steps": [{"export": {"format": "onnx"}}], **onnx},
                             {"name": "w8", "steps": [{"export": {"format": "onnx", "quantize": "weight-only"}}], **onnx}],
              "runoff": {"margin": 2.0, "max_seconds": 5}}
    report = torchslim.optimize("digits-mlp", "digits", recipe, goal=torchslim.Goal(objective="balanced"),
                                run=torchslim.RunOptions(out=tmp_path / "run", html=False, executor="ray"),
                                measure=torchslim.MeasureOptions(batch_sizes=(1,)))
    record = report.runoff
    assert record is not None and record.node == target.node_id
    assert [e.name for e in record.entries] == ["baseline", *sorted(["fp32", "w8"], key=lambda n: n != record.before)]
    assert all(e.p50_ms is not None for e in record.entries)
    assert record.picked == report.best == report.winners["balanced"]
    assert "ray: runoff of" in (tmp_path / "run" / "run.log").read_text()


def test_a_node_lost_mid_build_is_retried_elsewhere_and_the_run_completes(driver, tmp_path):
    import torchslim

    c, target, worker = driver
    slow = {"candidates": [
        {"name": f"distilled-{i}", "steps": [{"prune": {"method": "channel", "ratio": 0.5}},
                                               {"distill": {"epochs": 30}}]} for i in range(3)]}
    out = tmp_path / "run"
    result: dict = {}

    def run():
        try:
            result["report"] = torchslim.optimize(
                "digits-mlp", "digits", slow, run=torchslim.RunOptions(out=out, html=False, executor="ray"),
                measure=torchslim.MeasureOptions(batch_sizes=(1,), measure_fn=_quick_measure()))
        except BaseException as e:  # noqa: BLE001  (re-raised by the assertion below)
            result["error"] = e

    thread = threading.Thread(target=run)
    thread.start()
    mark = f"building on node {worker.node_id[:8]}"
    lost = None
    deadline = time.time() + 240
    while time.time() < deadline and thread.is_alive():
        log = (out / "run.log").read_text() if (out / "run.log").exists() else ""
        line = next((ln for ln in log.splitlines() if mark in ln), None)
        if line is not None:
            lost = line.split("ray: ", 1)[1].split(":", 1)[0]
            c.remove_node(worker)
            break
        time.sleep(0.1)
    thread.join(timeout=300)
    assert "error" not in result, result.get("error")
    assert lost is not None, "no build ran on the worker node"
    report = result["report"]
    assert all(x.status == "ok" for x in report.candidates), [x.error for x in report.candidates]
    again = report.candidate(lost)
    assert again.execution.attempts >= 2 and again.execution.built_on != worker.node_id
    assert {x.execution.measured_on for x in report.candidates} == {target.node_id}
    assert not _temp_folders(report.executor["run_id"])  # the lost worker's build folder was swept at the end
