from __future__ import annotations

import copy
import json

import jsonschema
import pytest

from torchslim.bench import Metrics
from torchslim.errors import ArtifactError
from torchslim.report import Candidate, Report, load_report, validate_report, write_report


def _metrics(p50: float = 1.0) -> Metrics:
    return Metrics(accuracy=0.98, size_bytes=1000, params=10, macs=None,
                   latency_ms={"1": {"p50": p50, "p95": p50 * 1.1, "cv": 0.05}},
                   throughput_per_s=1000.0, peak_memory_bytes=123, runtime="eager")


def _report() -> Report:
    base = Candidate(name="baseline", within_budget=True, artifact="baseline.pt2", metrics=_metrics())
    failed = Candidate(name="broken", status="failed", error="ExportError: no", metrics=None)
    return Report(torchslim_version="0.1.0", environment={"torch": "2.13", "device": "cpu", "cpu": "x", "threads": 2},
                  model="digits-cnn", data="digits", baseline=base, candidates=[failed], best=None)


def test_written_report_validates_and_round_trips(tmp_path):
    report = _report()
    path = write_report(report, tmp_path)
    assert load_report(tmp_path).model_dump() == report.model_dump()
    assert not [p for p in tmp_path.iterdir() if p.name != "report.json"]  # no temp files left
    validate_report(json.loads(path.read_text()))


@pytest.mark.parametrize(
    "breakage",
    [
        lambda d: d.pop("baseline"),
        lambda d: d.update(task="regression"),
        lambda d: d["baseline"]["metrics"].update(size_bytes=-1),
        lambda d: d["baseline"]["metrics"]["latency_ms"].update({"one": {"p50": 1, "p95": 1, "cv": 0}}),
        lambda d: d["candidates"][0].update(error=None),  # a failed candidate must say why
        lambda d: d["baseline"].update(status="ok", metrics=None),
        lambda d: d["budget"].update(max_accuracy_drop=-1),
    ],
)
def test_schema_rejects_broken_reports(breakage):
    data = json.loads(_report().model_dump_json())
    validate_report(copy.deepcopy(data))
    breakage(data)
    with pytest.raises(jsonschema.ValidationError):
        validate_report(data)


def test_load_report_refuses_garbage(tmp_path):
    (tmp_path / "report.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="not a valid torchslim report"):
        load_report(tmp_path)
    with pytest.raises(ArtifactError, match="No report"):
        load_report(tmp_path / "elsewhere")


def test_table_warns_when_measurements_were_taken_on_a_busy_machine():
    import io

    from rich.console import Console

    from torchslim.bench._contention import BUSY_NOTE_PREFIX
    from torchslim.core.notes import Note
    from torchslim.report import render_table

    report = _report()
    out = io.StringIO()
    render_table(report, console=Console(file=out, width=200))
    assert "unreliable" not in out.getvalue()
    report.baseline.notes.append(Note(kind="busy_machine", text=f"{BUSY_NOTE_PREFIX} 1.2 of 2 cores: unreliable"))
    out = io.StringIO()
    render_table(report, console=Console(file=out, width=200))
    assert "warning: baseline measured while other processes used the CPU" in out.getvalue()


def test_fallback_record_is_a_report_field_in_json_table_and_html(tmp_path):
    from rich.console import Console

    from torchslim.quantize._fallback import fallback_search
    from torchslim.report import render_table
    from torchslim.report._html import render_html

    costs = {"blocks.0.fc": 1.0, "blocks.1.attn": 0.0, "head": 0.8}

    def score(kept):
        return 1.0 - sum(c for name, c in costs.items() if name not in kept) / 100, None

    result, _ = fallback_search(list(costs), score, reference=1.0, target_drop=0.5, max_layers=8)
    report = _report()
    report.candidates.append(Candidate(name="int8-static", within_budget=True, artifact="int8.pt2",
                                       metrics=_metrics(0.5), fallback=result.to_dict()))
    write_report(report, tmp_path)
    saved = load_report(tmp_path)  # schema-valid with the record
    assert saved.candidates[1].fallback.kept_in_float == ["blocks.0.fc", "head"]
    assert [s.kept for s in saved.candidates[1].fallback.steps] == [True, False, True]
    console = Console(record=True, width=200)
    render_table(saved, console=console)
    assert "kept in float by fallback: blocks.0.fc, head (accuracy 0.9820 all int8 -> 1.0000)" in console.export_text()
    html = render_html(saved)
    assert "Kept in float: blocks.0.fc, head" in html and "no gain, back to int8" in html
    data = json.loads((tmp_path / "report.json").read_text())
    data["candidates"][1]["fallback"]["steps"][0].pop("kept")
    with pytest.raises(jsonschema.ValidationError):
        validate_report(data)
