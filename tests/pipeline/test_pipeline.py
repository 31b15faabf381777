"""The candidate search with fake steps: failures recorded, best selection, time budget, resume.

Fake steps obey the step contract (pipeline/context.py) exactly like the real techniques;
the measurement harness is swapped for one that measures accuracy and size for real but
reads latency from a table, so "fastest" is deterministic and the tests stay fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
from pydantic import BaseModel, ConfigDict, Field

import torchslim
from torchslim.bench import accuracy
from torchslim.bench._measure import Latency, Metrics
from torchslim.data import load_data
from torchslim.errors import ConfigError
from torchslim.pipeline import Goal, MeasureOptions, RunOptions, StepOutput, load_recipe, optimize
from torchslim.pipeline._search import skip_reason
from torchslim.report import load_report
from torchslim.train import TrainConfig, fit

CALLS: list[str] = []
INTERRUPT = {"on": False}


class ScaleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    factor: float = Field(1.0, gt=0)


def _scale_run(model, config, ctx):
    CALLS.append(ctx.work_dir.name)
    assert ctx.data.test is ctx.data.val, "steps must never see the held-out split"
    assert ctx.work_dir.is_dir() and ctx.teacher is not model
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(config.factor)
    return StepOutput(model=model, notes=[f"scaled by {config.factor}"])


def _break_run(model, config, ctx):
    CALLS.append(ctx.work_dir.name)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()  # every prediction becomes class 0: far outside any budget
    return StepOutput(model=model)


def _fail_run(model, config, ctx):
    raise RuntimeError("boom: this technique cannot handle the model\nsecond line")


def _interrupt_run(model, config, ctx):
    if INTERRUPT["on"]:
        raise KeyboardInterrupt
    CALLS.append(ctx.work_dir.name)
    return StepOutput(model=model)


def _fallback_run(model, config, ctx):
    facts = {"fallback": {"metric": "accuracy", "reference": 0.9, "quantized": 0.88, "final": 0.9, "target_drop": 0.5,
                          "within_target": True, "kept_in_float": ["1"],
                          "steps": [{"layer": "1", "metric_before": 0.88, "metric_after": 0.9, "kept": True}],
                          "ranking": [["1", 2.0], ["3", 0.0]]}}
    return StepOutput(model=model, facts=facts)


FAKE_STEPS = {
    "fallback": (lambda o: o, _fallback_run),
    "scale": SimpleNamespace(validate_step=lambda o: ScaleConfig.model_validate(o or {}), run_step=_scale_run),
    "break": (lambda o: o, _break_run),
    "fail": (lambda o: o, _fail_run),
    "interrupt": (lambda o: o, _interrupt_run),
}


def fake_measure(latencies: dict[str, float]):
    def measure(fn, data, *, artifact, runtime, batch_sizes, device, reference=None, params=None, macs=None,
                progress=None, **_kw):
        artifact = Path(artifact)
        name = artifact.parent.name if artifact.parent.parent.name == "candidates" else "baseline"
        p50 = latencies.get(name, 1.0)
        return Metrics(accuracy=accuracy(fn, data.test), size_bytes=artifact.stat().st_size, params=params or 0,
                       macs=macs, latency_ms={str(b): Latency(p50=p50 * b, p95=p50 * b * 1.1, cv=0.01) for b in batch_sizes},
                       throughput_per_s=max(batch_sizes) / (p50 * max(batch_sizes) / 1e3), peak_memory_bytes=1, runtime=runtime)

    return measure


@pytest.fixture(scope="module")
def trained():
    data = load_data("digits")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 2-layer MLP gains nothing from threads; on a busy machine they cost
    try:
        fit(model, data, TrainConfig(epochs=4, lr=1e-2))
    finally:
        torch.set_num_threads(threads)
    assert accuracy(model, data.test) > 0.85
    return model, data


def _run(trained, tmp_path, recipe, latencies=None, goal=None, **run):
    model, data = trained
    run.setdefault("out", tmp_path / "run")
    return optimize(model, data, load_recipe(recipe, step_table=FAKE_STEPS), goal=goal,
                    run=RunOptions(device="cpu", **run),
                    measure=MeasureOptions(batch_sizes=(1, 4), measure_fn=fake_measure(latencies or {})))


def test_failure_is_recorded_and_best_is_fastest_within_budget(trained, tmp_path):
    recipe = {"candidates": [
        {"name": "slow-ok", "steps": [{"scale": {"factor": 1.0}}]},
        {"name": "fails", "steps": [{"fail": None}]},
        {"name": "fastest-broken", "steps": [{"break": None}]},
        {"name": "fast-ok", "steps": [{"scale": {"factor": 2.0}}]},
    ]}
    report = _run(trained, tmp_path, recipe, {"baseline": 1.0, "slow-ok": 2.0, "fastest-broken": 0.1, "fast-ok": 0.5})
    by = {c.name: c for c in report.candidates}
    assert [c.name for c in report.candidates] == ["slow-ok", "fails", "fastest-broken", "fast-ok"]
    assert by["fails"].status == "failed" and by["fails"].error.startswith("RuntimeError: boom")
    assert by["fails"].within_budget is False and by["fails"].metrics is None
    assert by["fastest-broken"].status == "ok" and not by["fastest-broken"].within_budget
    assert by["slow-ok"].within_budget and by["fast-ok"].within_budget
    assert report.best == "fast-ok"  # not the first within budget, not the fastest outside it
    assert "scaled by 2.0" in by["fast-ok"].note_texts("technique")
    assert any(n.startswith("no speed-up at batch 1") for n in by["slow-ok"].note_texts("no_speedup"))
    run_dir = Path(report.run_dir)
    saved = json.loads((run_dir / "report.json").read_text())
    assert saved["best"] == "fast-ok" and saved["candidates"][1]["status"] == "failed"
    assert (run_dir / by["fast-ok"].artifact).is_file() and by["fast-ok"].artifact.startswith("candidates/fast-ok/")
    assert (run_dir / "report.html").is_file() and (run_dir / "run.log").is_file()
    assert "fails failed" in (run_dir / "run.log").read_text()


def test_scaled_weights_really_change_the_measured_model(trained, tmp_path):
    # A step's output is what gets measured: a factor that wrecks the logits' scale keeps
    # argmax (accuracy equal), while zeroed weights collapse it.
    report = _run(trained, tmp_path, {"candidates": [{"name": "zero", "steps": [{"break": None}]}]})
    assert report.candidates[0].metrics.accuracy < 0.2 < report.baseline.metrics.accuracy


def test_time_budget_skips_with_a_reason(trained, tmp_path):
    CALLS.clear()
    recipe = {"candidates": [{"name": "a", "steps": [{"scale": None}]}, {"name": "b", "steps": [{"scale": None}]}]}
    report = _run(trained, tmp_path, recipe, time_budget=0)
    assert [c.status for c in report.candidates] == ["skipped", "skipped"]
    assert all("time budget" in c.error and not c.within_budget for c in report.candidates)
    assert CALLS == [] and report.best is None
    load_report(report.run_dir)  # skipped candidates are schema-valid


def test_skip_reason_predicts_from_typical_duration():
    import time

    started = time.perf_counter() - 5.0
    assert skip_reason(started, None, [100.0]) is None
    assert skip_reason(started, 10.0, [1.0]) is None
    assert "takes ~6 s" in skip_reason(started, 10.0, [6.0])
    assert "was spent" in skip_reason(started, 4.0, [])


def test_resume_skips_measured_candidates(trained, tmp_path):
    recipe = {"candidates": [{"name": "first", "steps": [{"scale": None}]},
                             {"name": "second", "steps": [{"interrupt": None}]},
                             {"name": "third", "steps": [{"scale": None}]}]}
    CALLS.clear()
    INTERRUPT["on"] = True
    try:
        with pytest.raises(KeyboardInterrupt):
            _run(trained, tmp_path, recipe)
    finally:
        INTERRUPT["on"] = False
    saved = json.loads((tmp_path / "run" / "report.json").read_text())
    assert [c["name"] for c in saved["candidates"]] == ["first"]  # measured before the kill, kept
    assert CALLS == ["first"]
    with pytest.raises(ConfigError, match="already holds a torchslim run"):
        _run(trained, tmp_path, recipe)  # never overwritten silently
    report = _run(trained, tmp_path, recipe, resume=True)
    assert CALLS == ["first", "second", "third"]  # "first" was not run again
    assert [c.status for c in report.candidates] == ["ok", "ok", "ok"]
    assert report.candidates[0].metrics.model_dump() == saved["candidates"][0]["metrics"]


def test_refusing_a_used_out_dir_and_bad_options(trained, tmp_path):
    used = tmp_path / "used"
    used.mkdir()
    (used / "run.log").write_text("an earlier run\n")
    recipe = {"candidates": [{"name": "a", "steps": [{"scale": None}]}]}
    with pytest.raises(ConfigError, match="--resume"):
        _run(trained, tmp_path, recipe, out=used)
    assert (used / "run.log").read_text() == "an earlier run\n"
    with pytest.raises(ConfigError, match="max-accuracy-drop"):
        _run(trained, tmp_path, recipe, goal=Goal(max_accuracy_drop=-1))
    with pytest.raises(ConfigError, match="time-budget"):
        _run(trained, tmp_path, recipe, time_budget=-5)
    with pytest.raises(ConfigError, match=r"candidates\[0\]\.steps\[0\]\.scale.*factor"):
        _run(trained, tmp_path, {"candidates": [{"name": "a", "steps": [{"scale": {"factor": -1}}]}]})
    assert not (tmp_path / "run").exists()  # bad input fails before any work


def test_optimize_is_exported_at_top_level():
    assert torchslim.optimize is optimize


class PruneConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ratio: float = Field(0.5, gt=0, lt=1)
    ignore: list[str] = Field(default_factory=list)


def _prune_run(model, config, ctx):
    CALLS.append((ctx.work_dir.name, config.ratio, tuple(config.ignore)))
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, nn.Linear) and name not in config.ignore:
                w = module.weight
                w.masked_fill_(w.abs() <= w.abs().flatten().kthvalue(int(config.ratio * w.numel())).values, 0.0)
    return StepOutput(model=model, notes=["masked/unstructured sparsity: dense kernels"])


def test_sensitivity_and_refine_run_a_second_stage(trained, tmp_path):
    CALLS.clear()
    recipe = {"candidates": [{"name": "p", "steps": [{"prune": {"ratio": 0.5}}]}],
              "sensitivity": {"ratio": 0.5},
              "refine": {"ratio_deltas": [-0.2, 0.2, 0.6], "skip_sensitive": 1, "max_candidates": 3}}
    table = {**FAKE_STEPS, "prune": (lambda o: PruneConfig.model_validate(o or {}), _prune_run)}
    model, data = trained
    report = optimize(model, data, load_recipe(recipe, step_table=table), run=RunOptions(out=tmp_path / "run", device="cpu"),
                      measure=MeasureOptions(batch_sizes=(1,), measure_fn=fake_measure({})))
    layers = report.sensitivity["layers"]
    assert {r["name"] for r in layers} == {"1", "3"} and report.sensitivity["split"] == "val"
    assert layers[0]["accuracy_drop"] >= layers[1]["accuracy_drop"]  # most sensitive first
    names = [c.name for c in report.candidates]
    assert names[:3] == ["p", "p.ratio-0.3", "p.ratio-0.7"]  # 0.5 + 0.6 is out of range: not planned
    assert all(c.refined_from == "p" for c in report.candidates[1:])
    assert ("p.ratio-0.7", 0.7, ()) in CALLS
    sensitive = [r["name"] for r in layers if r["accuracy_drop"] > 0][:1]
    if sensitive:
        assert names[3] == "p.keep-1-sensitive" and ("p.keep-1-sensitive", 0.5, tuple(sensitive)) in CALLS
    assert report.candidate("p.ratio-0.3").steps == ["prune(ratio=0.3)"]
    assert "masked/unstructured sparsity: dense kernels" in report.candidate("p").note_texts()
    assert 'id="plot-sensitivity"' in (tmp_path / "run" / "report.html").read_text()


def test_refine_family_falls_back_to_the_most_accurate_over_budget():
    from torchslim.pipeline._recipe import PlannedCandidate, PlannedStep
    from torchslim.pipeline._refine import choose_family
    from torchslim.report import Candidate

    def cand(name, acc, within):
        return Candidate(name=name, within_budget=within, metrics=Metrics(
            accuracy=acc, size_bytes=10, params=1, macs=None, latency_ms={"1": Latency(p50=1, p95=1, cv=0)},
            throughput_per_s=1, peak_memory_bytes=1, runtime="eager"))

    step = PlannedStep("prune", {"ratio": 0.9}, None, None)
    plans = {"q": PlannedCandidate("q", [PlannedStep("quantize", {}, None, None)]),
             "p90": PlannedCandidate("p90", [step]), "p95": PlannedCandidate("p95", [step])}
    results = [cand("q", 0.97, True), cand("p95", 0.80, False), cand("p90", 0.90, False)]
    assert choose_family(results, plans, skip_layers=[]) == "p90"
    assert choose_family(results, plans, skip_layers=["conv1"]) == "q"  # quantize can skip layers


def test_select_best_ties_by_size_and_ignores_failures():
    from torchslim.pipeline import select_best
    from torchslim.report import Candidate

    def cand(name, p50, size, within=True, status="ok"):
        m = Metrics(accuracy=0.9, size_bytes=size, params=1, macs=None, latency_ms={"1": Latency(p50=p50, p95=p50, cv=0)},
                    throughput_per_s=1, peak_memory_bytes=1, runtime="eager")
        return Candidate(name=name, within_budget=within, status=status, metrics=m if status == "ok" else None,
                         error=None if status == "ok" else "x")

    assert select_best([cand("big", 1.0, 900), cand("small", 1.0, 300), cand("mid", 1.0, 500)]) == "small"
    assert select_best([cand("big", 1.0, 900), cand("small-noise", 1.01, 300)]) == "small-noise"  # within 2%: a tie
    assert select_best([cand("big", 1.0, 900), cand("small-slow", 1.5, 300)]) == "big"
    assert select_best([cand("fast-out", 0.1, 1, within=False), cand("f", 0.1, 1, status="failed"), cand("ok", 2.0, 9)]) == "ok"
    assert select_best([cand("out", 0.1, 1, within=False)]) is None


def test_honesty_notes_call_a_byte_level_size_difference_not_smaller():
    from torchslim.bench import Metrics
    from torchslim.pipeline._select import honesty_notes

    def metrics(size: int, p50: float) -> Metrics:
        return Metrics(accuracy=0.9, size_bytes=size, params=1, macs=None,
                       latency_ms={"1": {"p50": p50, "p95": p50, "cv": 0.0}}, throughput_per_s=1.0,
                       peak_memory_bytes=1, runtime="eager")

    base = metrics(100_000, 1.0)
    assert [n.kind for n in honesty_notes(base, metrics(99_990, 0.5))] == ["not_smaller"]  # same model, renamed
    assert honesty_notes(base, metrics(50_000, 0.5)) == []  # 2x smaller and 2x faster: nothing to confess
    assert [(n.kind, n.text) for n in honesty_notes(base, metrics(50_000, 1.02))] == [
        ("no_speedup", "no speed-up at batch 1 over the baseline (x0.98)")]


def test_a_steps_fallback_record_reaches_the_report_table_and_html(trained, tmp_path):
    report = _run(trained, tmp_path, {"candidates": [{"name": "q", "steps": [{"fallback": None}]}]})
    record = report.candidates[0].fallback
    assert record.kept_in_float == ["1"] and record.steps[0].metric_after == 0.9
    saved = load_report(report.run_dir)  # schema-valid, and the same record read back
    assert saved.candidates[0].fallback == record
    from rich.console import Console

    from torchslim.report import render_table

    console = Console(record=True, width=200)
    render_table(saved, console=console)
    assert "q: kept in float by fallback: 1 (accuracy 0.8800 all int8 -> 0.9000)" in console.export_text()
    assert "Kept in float: 1" in (Path(report.run_dir) / "report.html").read_text()
