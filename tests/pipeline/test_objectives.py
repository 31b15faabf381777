"""What "best" means: latency, throughput, size or balanced, hard constraints, every objective's
winner and the Pareto front (fake measurements: no timing is asserted)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.pipeline.test_pipeline import FAKE_STEPS, trained  # noqa: F401  (the trained fixture)
from torchslim.bench import accuracy
from torchslim.bench._measure import Latency, Metrics
from torchslim.cli import run
from torchslim.errors import ConfigError
from torchslim.pipeline import Goal, MeasureOptions, RunOptions, load_recipe, optimize
from torchslim.pipeline._select import Constraints, balanced_score, pareto_front, rank, winners
from torchslim.report import Candidate, load_report


def _metrics(acc: float, b1_ms: float, b32_ms: float, size: int) -> Metrics:
    return Metrics(accuracy=acc, size_bytes=size, params=1, macs=None,
                   latency_ms={"1": Latency(p50=b1_ms, p95=b1_ms, cv=0.0), "32": Latency(p50=b32_ms, p95=b32_ms, cv=0.0)},
                   throughput_per_s=32 / b32_ms * 1e3, peak_memory_bytes=1, runtime="eager")


BASE = _metrics(0.95, 1.0, 20.0, 1000)
POOL = [
    Candidate(name="fast", within_budget=True, metrics=_metrics(0.95, 0.2, 10.0, 900)),      # 5x b1, 2x b32, 1.1x smaller
    Candidate(name="batchy", within_budget=True, metrics=_metrics(0.95, 0.5, 4.0, 800)),     # best per sample at b32
    Candidate(name="tiny", within_budget=True, metrics=_metrics(0.945, 1.2, 18.0, 50)),      # 20x smaller, slower
    Candidate(name="both", within_budget=True, metrics=_metrics(0.95, 0.25, 8.0, 200)),      # 4x faster, 5x smaller
    Candidate(name="broken", within_budget=False, metrics=_metrics(0.10, 0.01, 0.1, 10)),   # outside the budget
    Candidate(name="dominated", within_budget=True, metrics=_metrics(0.94, 0.9, 19.0, 950)),
]


@pytest.mark.parametrize("objective, expected", [("latency", "fast"), ("throughput", "batchy"), ("size", "tiny"),
                                                 ("balanced", "both")])
def test_each_objective_picks_its_winner(objective, expected):
    assert rank(POOL, objective, baseline=BASE)[0].name == expected


def test_balanced_is_the_geometric_mean_and_its_winner_is_on_the_front():
    assert balanced_score(BASE, _metrics(0.9, 0.5, 10.0, 500)) == pytest.approx(2.0)  # 2x faster, 2x smaller
    assert balanced_score(BASE, _metrics(0.9, 0.25, 10.0, 1000)) == pytest.approx(2.0)  # 4x faster, same size
    front = pareto_front(POOL)
    assert winners(POOL, BASE)["balanced"] in front
    assert "dominated" not in front and "broken" in front  # the front is over accuracy too: broken is tiny and fast


def test_constraints_make_candidates_ineligible():
    picks = winners(POOL, BASE, Constraints(max_size_mb=100 / 1e6))
    assert picks == {"latency": "tiny", "throughput": "tiny", "size": "tiny", "balanced": "tiny"}
    assert rank(POOL, "latency", constraints=Constraints(max_latency_ms=0.1)) == []
    with pytest.raises(ConfigError, match="max-latency-ms"):
        Goal(max_latency_ms=-1.0)
    with pytest.raises(ConfigError, match="max-size-mb"):
        Goal(max_size_mb=math.nan)


def _sized_measure(table: dict[str, tuple[float, int]]):
    """Latency and size from a table (name -> (batch-1 ms, bytes)); accuracy measured for real."""
    def measure(fn, data, *, artifact, runtime, batch_sizes, device, reference=None, params=None, macs=None,
                progress=None, **_kw):
        artifact = Path(artifact)
        name = artifact.parent.name if artifact.parent.parent.name == "candidates" else "baseline"
        b1, size = table.get(name, (1.0, artifact.stat().st_size))
        return Metrics(accuracy=accuracy(fn, data.test), size_bytes=size, params=params or 0, macs=macs,
                       latency_ms={str(b): Latency(p50=b1 * b, p95=b1 * b, cv=0.0) for b in batch_sizes},
                       throughput_per_s=1e3 / b1, peak_memory_bytes=1, runtime=runtime)
    return measure


RECIPE = {"candidates": [{"name": "quick", "steps": [{"scale": {"factor": 1.0}}]},
                         {"name": "small", "steps": [{"scale": {"factor": 1.0}}]}]}
TABLE = {"baseline": (1.0, 10_000), "quick": (0.2, 9_000), "small": (0.8, 1_000)}


def test_optimize_records_objective_winners_pareto_and_constraints(trained, tmp_path):  # noqa: F811
    model, data = trained
    measure = MeasureOptions(batch_sizes=(1,), measure_fn=_sized_measure(TABLE))
    report = optimize(model, data, load_recipe({**RECIPE, "objective": "size"}, step_table=FAKE_STEPS),
                      run=RunOptions(out=tmp_path / "a", device="cpu", html=False), measure=measure)
    assert report.objective == "size" and report.best == "small"  # the recipe's objective
    assert report.winners == {"latency": "quick", "throughput": "quick", "size": "small", "balanced": "small"}
    assert set(report.pareto) == {"quick", "small"}
    saved = load_report(tmp_path / "a")  # validated against the JSON schema on load
    assert saved.winners == report.winners and saved.objective == "size"

    report = optimize(model, data, load_recipe(RECIPE, step_table=FAKE_STEPS), goal=Goal(max_size_mb=0.005),
                      run=RunOptions(out=tmp_path / "b", device="cpu", html=False), measure=measure)
    assert report.objective == "latency" and report.best == "small"  # quick is 9 kB: over the 5 kB limit
    assert report.constraints == {"max_size_mb": 0.005}
    assert any("not eligible" in n for n in report.candidate("quick").note_texts("warning"))


def test_bad_objective_exits_2(tmp_path, capsys):
    assert run(["optimize", "--objective", "cheapest", "--out", str(tmp_path / "r")]) == 2
    assert "cheapest" in capsys.readouterr().err
    assert run(["optimize", "--max-size-mb", "0", "--out", str(tmp_path / "r")]) == 2


def test_for_text_latency_and_throughput_rank_the_sentence_workload():
    from torchslim.bench._workload import Workload

    def text(b1_ms: float, one_by_one_s: float, batched_s: float) -> Candidate:
        m = _metrics(0.99, b1_ms, 20.0, 500)
        m.workload = Workload(sentences=100, mean_tokens=13.0, batch_size=32, batched_s=batched_s,
                              one_by_one_s=one_by_one_s)
        return Candidate(name=f"t{b1_ms}", within_budget=True, metrics=m)

    padded_fast = text(1.0, one_by_one_s=0.9, batched_s=0.30)  # fastest at 128 padded tokens
    real_fast = text(2.0, one_by_one_s=0.4, batched_s=0.10)  # fastest on real sentences
    assert rank([padded_fast, real_fast], "latency")[0] is real_fast
    assert rank([padded_fast, real_fast], "throughput")[0] is real_fast
