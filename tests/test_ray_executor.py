"""``--executor ray`` on a real multi-node Ray cluster on this machine (ray.cluster_utils):
a head (the driver's node) and two worker nodes of one CPU each, one of them the target
(the ``torchslim_target`` resource). One cluster serves the whole module; the node-loss test
runs last because it removes a node.
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

pytestmark = pytest.mark.slow

SRC = str(Path(__file__).resolve().parents[1] / "src")
MB = 1024 * 1024
TINY = {"candidates": [
    {"name": "pruned", "steps": [{"prune": {"method": "channel", "ratio": 0.5}}]},
    {"name": "onnx-int8", "steps": [{"export": {"format": "onnx", "quantize": "dynamic"}}], "runtime": "onnxruntime"},
    {"name": "shared", "steps": [{"prune": {"method": "magnitude", "ratio": 0.8}}, {"share": {"bits": 5}}]},
]}


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


def _intervals(report: dict) -> list[tuple[float, float, str]]:
    out = []
    for c in [report["baseline"], *report["candidates"]]:
        e = c.get("execution") or {}
        if e.get("measure_start") is not None:
            out.append((e["measure_start"], e["measure_end"], e["measured_on"]))
    return sorted(out)


def test_ray_runs_a_recipe_like_local_and_times_only_on_the_target(cluster, tmp_path):
    import torchslim
    from torchslim.artifacts import read_manifest

    c, target, _ = cluster
    measure = torchslim.MeasureOptions(batch_sizes=(1,), measure_fn=_quick_measure())
    local = torchslim.optimize("digits-mlp", "digits", TINY, run=torchslim.RunOptions(out=tmp_path / "local", html=False),
                               measure=measure)
    on_ray = torchslim.optimize("digits-mlp", "digits", TINY, measure=measure, run=torchslim.RunOptions(
        out=tmp_path / "ray", html=False, executor="ray", ray_address=c.address))
    assert [x.name for x in on_ray.candidates] == [x.name for x in local.candidates] == ["pruned", "onnx-int8", "shared"]
    for a, b in zip(local.candidates, on_ray.candidates, strict=True):
        assert a.status == b.status == "ok", (a.error, b.error)
        assert b.metrics.accuracy == a.metrics.accuracy, b.name  # same seed, same steps, same held-out split
        assert b.metrics.size_bytes == a.metrics.size_bytes, b.name
        assert b.execution.built_on and b.execution.build_s > 0 and b.execution.attempts == 1
        read_manifest(tmp_path / "ray" / b.artifact)  # written by the driver, digests verified
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


def test_a_node_lost_mid_build_is_retried_elsewhere_and_the_run_completes(cluster, tmp_path):
    import ray

    import torchslim

    c, target, worker = cluster
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

    # The caller's own connection (made here, in the main thread: a driver that connects from
    # another thread was, now and then, declared dead by the GCS as it registered).
    ray.init(address=c.address, include_dashboard=False, log_to_driver=False)
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
    ray.shutdown()
    assert "error" not in result, result.get("error")
    assert lost is not None, "no build ran on the worker node"
    report = result["report"]
    assert all(x.status == "ok" for x in report.candidates), [x.error for x in report.candidates]
    again = report.candidate(lost)
    assert again.execution.attempts >= 2 and again.execution.built_on != worker.node_id
    assert {x.execution.measured_on for x in report.candidates} == {target.node_id}
