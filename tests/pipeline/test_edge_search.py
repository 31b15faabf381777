"""The search to the edge of the budget (recipe ``search:``), with fake steps whose accuracy
falls off a cliff at a known strength, so the bisection's path is known in advance."""

from __future__ import annotations

import pytest
import torch
from pydantic import BaseModel, ConfigDict, Field

from tests.pipeline.test_pipeline import FAKE_STEPS, fake_measure, trained  # noqa: F401  (trained is a fixture)
from torchslim.core.step import StepOutput
from torchslim.errors import ConfigError
from torchslim.pipeline import Goal, MeasureOptions, RunOptions, load_recipe, optimize
from torchslim.pipeline._allocate import allocate_ratios
from torchslim.pipeline._edge import KNOBS

CLIFF = 0.6  # the fake prune keeps the model intact up to this ratio and destroys it beyond
CALLS: list[tuple[str, float]] = []


class CliffConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ratio: float = Field(0.5, ge=0, lt=1)


def _cliff_run(model, config, ctx):
    CALLS.append((ctx.work_dir.name, config.ratio))
    if config.ratio > CLIFF:
        with torch.no_grad():
            for p in model.parameters():
                p.zero_()  # every prediction becomes class 0
    return StepOutput(model=model)


TABLE = {**FAKE_STEPS, "prune": (lambda o: CliffConfig.model_validate(o or {}), _cliff_run)}


def _optimize(trained, tmp_path, recipe, goal=None, **run):  # noqa: F811
    model, data = trained
    run.setdefault("out", tmp_path / "run")
    return optimize(model, data, load_recipe(recipe, step_table=TABLE), goal=goal, run=RunOptions(device="cpu", **run),
                    measure=MeasureOptions(batch_sizes=(1,), measure_fn=fake_measure({})))


def test_a_family_out_of_budget_is_retried_weaker_by_bisection(trained, tmp_path):  # noqa: F811
    CALLS.clear()
    recipe = {"candidates": [{"name": "p", "steps": [{"prune": {"ratio": 0.9}}]}], "search": {"max_tries": 4}}
    report = _optimize(trained, tmp_path, recipe)
    assert not report.candidate("p").within_budget
    tries = [c for c in report.candidates if c.refined_from == "p"]
    # Bisection on log density between 0 (assumed fine) and 0.9 (measured out): 0.684 out,
    # 0.438 in, 0.578 in, 0.635 out; then the tries are spent.
    assert [r for _, r in CALLS] == [0.9, 0.6838, 0.4377, 0.5783, 0.6348]
    assert [c.name for c in tries] == ["p.ratio-0.6838", "p.ratio-0.4377", "p.ratio-0.5783", "p.ratio-0.6348"]
    assert [c.within_budget for c in tries] == [False, True, True, False]
    assert report.candidate("p.ratio-0.5783").steps == ["prune(ratio=0.5783)"]
    notes = report.candidate("p.ratio-0.5783").note_texts("technique")
    assert any("edge search of p, try 3/4: ratio=0.5783" in n and "within budget" in n for n in notes)
    assert report.best in {"p.ratio-0.4377", "p.ratio-0.5783"}


def test_the_tries_are_bounded_by_max_tries_and_by_convergence(trained, tmp_path):  # noqa: F811
    CALLS.clear()
    recipe = {"candidates": [{"name": "p", "steps": [{"prune": {"ratio": 0.9}}]}], "search": {"max_tries": 2}}
    report = _optimize(trained, tmp_path, recipe)
    assert len([c for c in report.candidates if c.refined_from == "p"]) == 2 and len(CALLS) == 3
    # Bits bisect over whole numbers: 8 bits (assumed fine) .. 7 bits (out) leaves nothing to try.
    assert KNOBS["share"].midpoint(8, 7) is None and KNOBS["share"].midpoint(8, 2) == 5
    assert KNOBS["prune"].midpoint(0.5, 0.52) is None  # densities within 15%: converged


def test_size_objective_pushes_a_family_well_inside_the_budget(trained, tmp_path):  # noqa: F811
    CALLS.clear()
    recipe = {"candidates": [{"name": "p", "steps": [{"prune": {"ratio": 0.3}}]}], "search": {"max_tries": 4}}
    report = _optimize(trained, tmp_path, recipe, goal=Goal(objective="size"))
    assert report.candidate("p").within_budget
    # From 0.3 (in) toward 0.99: 0.916 out, 0.758 out, 0.588 in, 0.684 out.
    assert [r for _, r in CALLS] == [0.3, 0.9163, 0.7579, 0.5883, 0.6843]
    assert [c.within_budget for c in report.candidates[1:]] == [False, False, True, False]
    # Under latency a family within budget is left as the recipe wrote it.
    CALLS.clear()
    report = _optimize(trained, tmp_path, recipe, out=tmp_path / "latency")
    assert [c.name for c in report.candidates] == ["p"] and len(CALLS) == 1


def test_time_budget_ends_a_family_search_with_a_skipped_try(trained, tmp_path, monkeypatch):  # noqa: F811
    import torchslim.pipeline._optimize as opt

    calls = {"n": 0}

    def fake_skip(started, budget, durations):
        calls["n"] += 1
        return None if calls["n"] <= 2 else "not run: the time budget of 1 s was spent"

    monkeypatch.setattr(opt, "skip_reason", fake_skip)
    recipe = {"candidates": [{"name": "p", "steps": [{"prune": {"ratio": 0.9}}]}], "search": {"max_tries": 4}}
    report = _optimize(trained, tmp_path, recipe)
    tries = [c for c in report.candidates if c.refined_from == "p"]
    assert [c.status for c in tries] == ["ok", "skipped"]
    assert "time budget" in tries[1].error


def test_resume_keeps_the_tries_already_measured(trained, tmp_path):  # noqa: F811
    recipe = {"candidates": [{"name": "p", "steps": [{"prune": {"ratio": 0.9}}]}], "search": {"max_tries": 3}}
    first = _optimize(trained, tmp_path, recipe)
    CALLS.clear()
    again = _optimize(trained, tmp_path, recipe, resume=True)
    assert CALLS == [] and [c.name for c in again.candidates] == [c.name for c in first.candidates]
    assert all(len(c.note_texts("technique")) == 1 for c in again.candidates[1:])


def test_search_options_are_validated():
    with pytest.raises(ConfigError, match=r"search\.max_tries"):
        from torchslim.pipeline._recipe import load_recipe

        load_recipe({"candidates": [{"name": "p", "steps": []}], "search": {"max_tries": 0}})


def test_allocation_prunes_insensitive_layers_harder_at_the_target_ratio():
    table = {"layers": [{"name": "fc1", "params": 19200, "accuracy_drop": 10.0},
                        {"name": "fc2", "params": 30000, "accuracy_drop": 3.0},
                        {"name": "fc3", "params": 1000, "accuracy_drop": 10.0},
                        {"name": "gain", "params": 500, "accuracy_drop": -2.0}]}
    ratios = allocate_ratios(table, 0.9)
    params = {r["name"]: r["params"] for r in table["layers"]}
    kept = sum(params[n] * (1 - r) for n, r in ratios.items())
    assert kept == pytest.approx(0.1 * sum(params.values()), rel=1e-3)
    # Less sensitive layers are pruned harder; of two equally sensitive ones, the larger.
    assert ratios["fc2"] > ratios["fc1"] > ratios["fc3"]
    assert (1 - ratios["fc1"]) / (1 - ratios["fc3"]) == pytest.approx((1000 / 19200) ** 0.5, rel=1e-3)
    assert (1 - ratios["fc1"]) / (1 - ratios["fc2"]) == pytest.approx((10.1 * 30000 / 3.1 / 19200) ** 0.5, rel=1e-3)
    assert 1 - ratios["gain"] < 1 - ratios["fc3"]  # a negative drop counts as none
    assert allocate_ratios(None, 0.9) == {} and allocate_ratios(table, 0.0) == {}
    assert all(0.0 <= r < 1.0 for r in allocate_ratios(table, 0.999).values())


def test_real_magnitude_pruning_tries_use_per_layer_ratios(trained, tmp_path):  # noqa: F811
    model, data = trained
    recipe = {"candidates": [{"name": "p", "steps": [{"prune": {"method": "magnitude", "ratio": 0.98}}]}],
              "sensitivity": {"ratio": 0.9}, "search": {"max_tries": 2}}
    report = optimize(model, data, recipe, run=RunOptions(out=tmp_path / "run", device="cpu"),
                      measure=MeasureOptions(batch_sizes=(1,), measure_fn=fake_measure({})))
    assert not report.candidate("p").within_budget
    tries = [c for c in report.candidates if c.refined_from == "p"]
    assert len(tries) == 2 and tries[0].name == "p.ratio-0.98-per-layer"
    assert "layer_ratios=" in tries[0].steps[0] and "'1':" in tries[0].steps[0]
    drops = {r["name"]: r["accuracy_drop"] for r in report.sensitivity["layers"]}
    ratios = allocate_ratios(report.sensitivity, 0.98)
    least, most = min(drops, key=drops.get), max(drops, key=drops.get)
    assert drops[least] == drops[most] or ratios[least] > ratios[most]


def test_families_under_size_are_searched_smallest_first():
    from torchslim.bench._measure import Latency, Metrics
    from torchslim.pipeline._edge import choose_families
    from torchslim.pipeline._recipe import PlannedCandidate, PlannedStep, SearchSpec
    from torchslim.report import Candidate

    def cand(name, acc, size):
        return Candidate(name=name, within_budget=acc >= 0.975, metrics=Metrics(
            accuracy=acc, size_bytes=size, params=1, macs=None, latency_ms={"1": Latency(p50=1, p95=1, cv=0)},
            throughput_per_s=1, peak_memory_bytes=1, runtime="eager"))

    plans = {n: PlannedCandidate(n, [PlannedStep("prune", {"ratio": 0.9}, None, None)]) for n in "abcd"}
    results = [cand("a", 0.98, 30_000), cand("b", 0.86, 9_000), cand("c", 0.36, 4_000), cand("d", 0.978, 20_000)]
    base = cand("baseline", 0.98, 100_000).metrics
    spec = SearchSpec(max_families=3)
    # a and d are well inside a 0.5-point budget (drops 0 and 0.2 <= 0.25), b and c outside it.
    assert choose_families(spec, results, plans, "size", base, 0.5) == ["c", "b", "d"]
    assert choose_families(spec, results, plans, "latency", base, 0.5) == ["b", "c"]


def test_a_failed_try_ends_that_familys_search(trained, tmp_path, monkeypatch):  # noqa: F811
    # A refused setting (factorize: "would change no layer") says nothing about the budget:
    # bisecting further toward it would only repeat the refusal.
    def refusing_run(model, config, ctx):
        if config.ratio < 0.5:
            raise RuntimeError("this technique refuses so weak a setting")
        return _cliff_run(model, config, ctx)

    monkeypatch.setitem(TABLE, "prune", (TABLE["prune"][0], refusing_run))
    CALLS.clear()
    recipe = {"candidates": [{"name": "p", "steps": [{"prune": {"ratio": 0.9}}]}], "search": {"max_tries": 4}}
    report = _optimize(trained, tmp_path, recipe)
    tries = [c for c in report.candidates if c.refined_from == "p"]
    assert [c.name for c in tries] == ["p.ratio-0.6838", "p.ratio-0.4377"]  # then no more tries
    assert [c.status for c in tries] == ["ok", "failed"] and "refuses" in tries[1].error
