"""The runoff: the objective's close contenders re-timed side by side before the pick.

Unit tests give fake paired timings (no clock is read, no timing asserted); the end-to-end
test runs a real two-candidate recipe and checks the record, not the figures.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pipeline.test_objectives import BASE, POOL, _metrics
from torchslim.pipeline._recipe import RunoffSpec
from torchslim.pipeline._runoff import contenders, runoff
from torchslim.report import Candidate, Report


def _report(pool=POOL) -> Report:
    base = Candidate(name="baseline", within_budget=True, artifact="baseline.pt2", metrics=BASE)
    pool = [c.model_copy(update={"artifact": f"{c.name}.onnx"}) for c in pool]
    return Report(torchslim_version="0.0.0", environment={}, model="m", data="d", baseline=base, candidates=pool)


def _timer(paired_ms: dict[str, float], order: list[str]):
    """A Timer returning fixed calls per variant, in the order the runoff loaded them."""
    def timer(calls, budget_s, target_s):
        assert len(calls) == len(order)
        return [[paired_ms[name]] * 5 for name in order]
    return timer


def _run(report, objective, paired, order, spec=RunoffSpec(), broken=()):
    def load_fn(path, device):
        if path.stem in broken:
            raise RuntimeError(f"cannot load {path.name}")
        return lambda *_x: None
    return runoff(report, objective, spec, None, run_dir=Path("/run"),
                  make_inputs=lambda b: (), device="cpu", timer=_timer(paired, order), load_fn=load_fn)


def test_contenders_are_the_leader_and_those_within_the_margin():
    report = _report()
    # latency at batch 1: fast 0.20, both 0.25 (+25%), batchy 0.5, dominated 0.9
    assert [c.name for c in contenders(report, "latency", RunoffSpec(margin=0.3), None)] == ["fast", "both"]
    assert [c.name for c in contenders(report, "latency", RunoffSpec(margin=0.2), None)] == []  # alone: nothing to re-time
    assert len(contenders(report, "latency", RunoffSpec(margin=2.0, max_candidates=3), None)) == 3
    assert contenders(report, "size", RunoffSpec(margin=2.0), None) == []  # sizes do not drift


def test_the_paired_medians_make_the_pick():
    record = _run(_report(), "latency", {"fast": 0.30, "both": 0.22}, ["fast", "both"])
    assert (record.before, record.picked) == ("fast", "both")
    assert [(e.name, e.p50_ms, e.runs, e.measured_ms) for e in record.entries] == [
        ("fast", 0.30, 5, 0.2), ("both", 0.22, 5, 0.25)]
    assert "picked both; the sequential measurements had picked fast" in record.line()


def test_a_tie_side_by_side_goes_to_the_smaller_file():
    record = _run(_report(), "latency", {"fast": 0.200, "both": 0.203}, ["fast", "both"])
    assert record.picked == "both"  # within 2%: both is 200 B, fast 900 B


def test_balanced_times_the_baseline_with_the_contenders():
    pool = [Candidate(name="int8", within_budget=True, metrics=_metrics(0.95, 0.20, 10.0, 250)),   # 5x, 4x: 4.47
            Candidate(name="w8", within_budget=True, metrics=_metrics(0.95, 0.28, 10.0, 260))]     # 3.6x, 3.8x: 3.7
    record = _run(_report(pool), "balanced", {"baseline": 1.0, "int8": 0.30, "w8": 0.20}, ["baseline", "int8", "w8"])
    assert [e.name for e in record.entries] == ["baseline", "int8", "w8"]
    assert (record.before, record.picked) == ("int8", "w8")  # side by side: 5x and 3.8x beat 3.3x and 4x


def test_a_contender_that_cannot_be_loaded_is_out_and_the_leader_stands_when_it_is_the_one():
    record = _run(_report(), "latency", {"fast": 0.30, "both": 0.22}, ["fast"], broken=("both",))
    assert record.picked == "fast" and record.entries[1].p50_ms is None
    assert "cannot load both.onnx" in record.entries[1].error
    record = _run(_report(), "latency", {"fast": 0.30, "both": 0.22}, ["both"], broken=("fast",))
    assert record.picked == "fast"  # the leader untimed: its sequential win stands


def test_optimize_runs_the_runoff_and_its_pick_is_best(tmp_path, capsys):
    from torchslim.pipeline import Goal, RunOptions, optimize
    from torchslim.report import load_report, render_table

    recipe = {"candidates": [{"name": "onnx-fp32", "steps": [{"export": {"format": "onnx"}}], "runtime": "onnxruntime"},
                             {"name": "onnx-int8-weights", "steps": [{"export": {"format": "onnx", "quantize": "weight-only"}}],
                              "runtime": "onnxruntime"}],
              "runoff": {"margin": 2.0, "max_seconds": 5}}
    report = optimize("digits-mlp", "digits", recipe, goal=Goal(objective="latency"),
                      run=RunOptions(out=tmp_path / "run", html=True))
    saved = load_report(tmp_path / "run")
    assert saved.runoff is not None and saved.runoff.picked == saved.best == saved.winners["latency"] == report.best
    assert {e.name for e in saved.runoff.entries} == {"onnx-fp32", "onnx-int8-weights"}
    assert all(e.p50_ms is not None and e.runs >= 1 for e in saved.runoff.entries)
    assert 'id="runoff"' in (tmp_path / "run" / "report.html").read_text()
    from rich.console import Console

    console = Console(width=120, record=True)
    console.print(render_table(saved, console))
    assert "runoff (latency, batch 1, timed side by side)" in console.export_text()


@pytest.mark.parametrize("field, value", [("max_candidates", 1), ("margin", 0), ("max_seconds", 0)])
def test_the_recipe_key_refuses_nonsense(field, value):
    from torchslim.errors import ConfigError
    from torchslim.pipeline import load_recipe

    with pytest.raises(ConfigError, match=field):
        load_recipe({"candidates": [{"name": "a", "steps": [{"export": "onnx"}]}], "runoff": {field: value}})


def test_a_failing_runoff_leaves_the_sequential_pick_and_the_run_completes(tmp_path, monkeypatch, capsys):
    from torchslim.pipeline import Goal, RunOptions, _optimize, optimize

    def broken(*_a, **_k):
        raise RuntimeError("the runoff broke")

    monkeypatch.setattr(_optimize, "runoff", broken)
    recipe = {"candidates": [{"name": "a", "steps": [{"export": {"format": "onnx"}}], "runtime": "onnxruntime"},
                             {"name": "b", "steps": [{"export": {"format": "onnx"}}], "runtime": "onnxruntime"}],
              "runoff": {"margin": 2.0}}
    report = optimize("digits-mlp", "digits", recipe, goal=Goal(objective="latency"),
                      run=RunOptions(out=tmp_path / "run", html=False))
    assert report.best in ("a", "b") and report.runoff is None
    assert "runoff: failed (RuntimeError: the runoff broke); the pick stands" in capsys.readouterr().err
