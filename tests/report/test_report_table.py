"""The terminal table fits a 120-column terminal, piped or not, with every figure unbroken."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from torchslim.bench._measure import Latency
from torchslim.bench._workload import Workload
from torchslim.report import Candidate, render_table
from torchslim.report._table import TABLE_WIDTH

from .test_report_html import _metrics, sample_report


def _wide_report(workload: bool):
    report = sample_report()
    long_name = "pruned-distilled-onnx-int8-static-fallback.ratio-0.6516"
    metrics = _metrics(0.9711, 43_400, 0.0302, "onnxruntime")
    metrics.latency_ms["8"] = Latency(p50=0.11, p95=0.12, cv=0.03)
    report.candidates.append(Candidate(name=long_name, within_budget=True, artifact="candidates/x/model.onnx",
                                       metrics=metrics))
    report.candidates.append(Candidate(name="openvino-int8", status="failed", within_budget=False,
                                       error="ExportError: " + "a very long reason why the export failed " * 6))
    if workload:
        for c in [report.baseline, *report.candidates]:
            if c.metrics is not None:
                c.metrics.workload = Workload(sentences=60, mean_tokens=11.5, batch_size=32, batched_s=0.412,
                                              one_by_one_s=1.734)
    report.winners = {"latency": long_name, "throughput": long_name, "size": "deep-compression", "balanced": long_name}
    report.best = long_name
    return report, long_name


@pytest.mark.parametrize("workload", [False, True], ids=["images", "text"])
def test_table_fits_120_columns_with_every_figure_whole(workload):
    report, long_name = _wide_report(workload)
    out = io.StringIO()
    render_table(report, console=Console(file=out, width=TABLE_WIDTH))
    text = out.getvalue()
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= TABLE_WIDTH, max(lines, key=len)
    # Figures are never folded across lines: each cell is whole on one line.
    for figure in ["97.11", "42.4 KB 2.3x", "0.030 3.3x", "0.242 3.3x", "onnxruntime"]:
        assert figure in text, figure
    assert "b=8 ms" not in text  # three batch sizes: the smallest and the largest are shown
    assert "openvino-int8 failed: ExportError: a very long reason" in text
    if workload:
        assert "0.412 1.0x" in text and "1.734 1.0x" in text
    assert f"best (latency): {long_name}" in text


def test_piped_table_is_laid_out_for_120_columns(capsys):
    report, _ = _wide_report(workload=False)
    render_table(report)  # stdout is captured: not a terminal
    lines = capsys.readouterr().out.splitlines()
    assert lines and max(len(line) for line in lines) <= TABLE_WIDTH
