"""``torchslim prune``: real artifacts, measured side by side; bad input exits 2."""

from __future__ import annotations

import json

import pytest

from torchslim.cli import run


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
    assert not (tmp_path / "pruned.pt2").exists()


@pytest.mark.slow
def test_unknown_layer_exits_2(tmp_path):
    assert run(["prune", "--model", "digits-mlp", "--ignore", "net.9", "--out", str(tmp_path)]) == 2


@pytest.mark.slow
def test_global_prune_writes_sparse_file_and_honest_notes(tmp_path):
    code = run(["prune", "--model", "digits-mlp", "--method", "global", "--ratio", "0.9",
                "--batch-sizes", "1", "--out", str(tmp_path)])
    assert code == 0
    summary = json.loads((tmp_path / "prune.json").read_text())
    dense, sparse = summary["files_bytes"]["original.pt2"], summary["files_bytes"]["pruned.tslim"]
    assert sparse < 0.3 * dense
    assert summary["metrics"]["pruned"]["size_bytes"] == sparse  # the measured artifact is the sparse one
    assert summary["metrics"]["pruned"]["nonzero_params"] < 0.11 * summary["metrics"]["original"]["params"]
    assert "90.0%" in summary["notes"][0] and "dense" in summary["notes"][1]


@pytest.mark.slow
def test_channel_prune_artifact_is_smaller(tmp_path):
    code = run(["prune", "--model", "digits-mlp", "--method", "channel", "--ratio", "0.5",
                "--batch-sizes", "1", "--out", str(tmp_path)])
    assert code == 0
    summary = json.loads((tmp_path / "prune.json").read_text())
    original, pruned = summary["metrics"]["original"], summary["metrics"]["pruned"]
    assert pruned["params"] < 0.5 * original["params"]
    assert pruned["size_bytes"] < 0.6 * original["size_bytes"]
    assert pruned["macs"] < 0.5 * original["macs"]
