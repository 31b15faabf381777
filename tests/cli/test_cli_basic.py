"""The real CLI: exit codes and messages (0 ok, 2 bad input, never a traceback)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from torchslim.cli import run


def test_models_lists_the_zoo(capsys):
    assert run(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("digits-cnn", "resnet-mini", "tiny-transformer"):
        assert name in out


@pytest.mark.parametrize(
    "args, words",
    [
        (["bench", "--model", "nonexistent-net"], "Unknown zoo model"),
        (["bench", "--model", "digits-mlp", "--data", "cifar10"], "Unknown DATA spec"),
        (["bench", "--model", "digits-mlp", "--data", "npz:/missing.npz"], "does not exist"),
        (["bench", "--model", "digits-mlp", "--batch-sizes", "0,-3"], "batch size"),
        (["bench", "--model", "digits-mlp", "--batch-sizes", "one"], "whole numbers"),
        (["bench", "--model", "tests/fixtures/user_code.py:nope"], "has no attribute"),
        (["bench", "--model", "tests/fixtures/user_code.py:not_a_module"], "not a torch.nn.Module"),
        (["bench", "--model", "missing/model.pt2"], "does not exist"),
        (["bench", "--model", "digits-mlp", "--device", "tpu"], "Unknown device"),
        (["bench", "--no-such-option"], "No such option"),
    ],
)
def test_bad_input_exits_2_with_a_message(args, words, capsys):
    assert run(args) == 2
    captured = capsys.readouterr()
    text = captured.err + captured.out
    assert words in text.replace("\n", " ") or words in text
    assert "Traceback" not in text


def test_empty_npz_and_corrupt_weights(tmp_path, capsys):
    path = tmp_path / "empty.npz"
    np.savez(path)
    assert run(["bench", "--model", "digits-mlp", "--data", f"npz:{path}"]) == 2
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"\x00garbage")
    assert run(["bench", "--model", "tests/fixtures/user_code.py:make_model", "--weights", str(weights)]) == 2
    assert weights.read_bytes() == b"\x00garbage"
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.slow
def test_bench_prints_every_metric():
    proc = subprocess.run(
        [sys.executable, "-m", "torchslim", "bench", "--model", "digits-mlp", "--data", "digits", "--batch-sizes", "1,32"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    for words in ("accuracy", "size on disk", "params", "MACs", "latency b=1", "latency b=32", "p95", "cv", "throughput", "peak memory"):
        assert words in proc.stdout


@pytest.mark.slow
def test_optimize_writes_a_valid_report(tmp_path):
    out = tmp_path / "run"
    assert run(["optimize", "--model", "digits-mlp", "--out", str(out), "--recipe", "quick"]) in (0,)
    data = json.loads((out / "report.json").read_text())
    from torchslim.report import validate_report

    validate_report(data)
    assert data["baseline"]["metrics"]["size_bytes"] == (out / data["baseline"]["artifact"]).stat().st_size
    # a second run into the same directory is refused, and the first report is untouched
    before = (out / "report.json").read_bytes()
    assert run(["optimize", "--model", "digits-mlp", "--out", str(out)]) == 2
    assert (out / "report.json").read_bytes() == before
