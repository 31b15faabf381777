"""``torchslim prune``: a one-candidate recipe with real artifacts, measured; bad input exits 2."""

from __future__ import annotations

import pytest

from torchslim.cli import run
from torchslim.report import load_report


@pytest.mark.parametrize(
    "args",
    [
        ["--ratio", "1.0"],
        ["--ratio", "-0.2"],
        ["--method", "sparsegpt"],
        ["--method", "magnitude", "--importance", "taylor"],
        ["--method", "channel", "--scope", "everywhere"],
    ],
)
def test_bad_options_exit_2_before_any_work(args, tmp_path):
    assert run(["prune", "--model", "digits-mlp", *args, "--out", str(tmp_path)]) == 2
    assert not (tmp_path / "report.json").exists()


@pytest.mark.slow
def test_unknown_layer_exits_2(tmp_path):
    assert run(["prune", "--model", "digits-mlp", "--ignore", "net.9", "--out", str(tmp_path)]) == 2


@pytest.mark.slow
def test_global_prune_writes_sparse_file_and_honest_notes(tmp_path):
    code = run(["prune", "--model", "digits-mlp", "--method", "global", "--ratio", "0.9",
                "--batch-sizes", "1", "--out", str(tmp_path)])
    assert code == 0
    report = load_report(tmp_path)
    cand = report.candidate("prune-global")
    assert cand.steps == ["prune(method=global, ratio=0.9)", "encode(huffman)"] or cand.steps[-1].startswith("encode")
    assert cand.artifact.endswith(".tslim") and cand.metrics.runtime == "tslim"
    dense, sparse = report.baseline.metrics.size_bytes, cand.metrics.size_bytes
    assert sparse == (tmp_path / cand.artifact).stat().st_size  # the measured artifact is the sparse one
    assert sparse < 0.3 * dense
    assert any("90.0%" in n for n in cand.note_texts()) and any("dense" in n for n in cand.note_texts())


@pytest.mark.slow
def test_channel_prune_artifact_is_smaller(tmp_path):
    code = run(["prune", "--model", "digits-mlp", "--method", "channel", "--ratio", "0.5",
                "--batch-sizes", "1", "--out", str(tmp_path)])
    assert code == 0
    report = load_report(tmp_path)
    original, pruned = report.baseline.metrics, report.candidate("prune-channel").metrics
    assert pruned.params < 0.5 * original.params
    assert pruned.size_bytes < 0.6 * original.size_bytes
    assert pruned.macs < 0.5 * original.macs
