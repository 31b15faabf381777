"""``torchslim export``: writes the artifact, prints path, size and parity; bad input exits 2."""

from __future__ import annotations

import pytest

from torchslim.artifacts import load, read_manifest
from torchslim.cli import run


def test_cli_exports_a_dynamic_int8_onnx_model(tmp_path, capsys):
    out = tmp_path / "cnn"
    assert run(["export", "--model", "digits-cnn", "--data", "digits", "--format", "onnx",
                "--quantize", "dynamic", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    path = out / "model.onnx"
    assert f"wrote {path}" in printed and f"{path.stat().st_size:,} bytes" in printed
    assert "cosine" in printed and "tolerance" in printed
    assert read_manifest(path).extra["quantize"] == "dynamic"
    assert load(path)(*read_manifest(path).example_inputs(3)).shape == (3, 10)


@pytest.mark.parametrize("argv, words", [
    (["--format", "tensorrt"], "TensorRT"),
    (["--format", "pt2", "--quantize", "dynamic"], "quantize"),
    (["--format", "zip"], "Unknown export format"),
    (["--quantize", "sometimes"], "quantize"),
    (["--model", "no-such-model"], "Unknown zoo model"),
])
def test_cli_bad_input_exits_2_with_a_message(argv, words, tmp_path, capsys):
    assert run(["export", "--out", str(tmp_path / "x"), *argv]) == 2
    assert words in " ".join(capsys.readouterr().err.split())
    assert not (tmp_path / "x").exists()
