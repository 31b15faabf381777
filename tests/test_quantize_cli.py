"""``torchslim quantize``: writes the artifact, prints fp32 vs quantized; bad input exits 2."""

from __future__ import annotations

import pytest

from tests._quant_fixtures import trained
from torchslim.artifacts import read_manifest
from torchslim.cli import run


@pytest.fixture(scope="module", autouse=True)
def _trained_mlp():
    trained("digits-mlp")  # the CLI resolves the same cached weights


@pytest.mark.slow
def test_quantize_writes_and_measures(tmp_path, capsys):
    out = tmp_path / "q"
    code = run(["quantize", "--model", "digits-mlp", "--method", "dynamic", "--runtime", "eager",
                "--batch-sizes", "1", "--out", str(out)])
    assert code == 0
    manifest = read_manifest(out / "dynamic.pt2")
    assert manifest.runtime == "eager" and manifest.steps == ["quantize(method=dynamic)"]
    assert (out / "baseline.pt2").stat().st_size > (out / "dynamic.pt2").stat().st_size
    printed = capsys.readouterr().out
    assert "fp32" in printed and "dynamic" in printed and "p50 b=1" in printed


@pytest.mark.parametrize(
    "args, message",
    [
        (["--method", "int4"], "int4"),
        (["--method", "int3"], "int3"),
        (["--method", "static", "--calibration-batches", "0"], "calibration_batches"),
        (["--method", "dynamic", "--skip", "nope"], "nope"),
        (["--method", "bf16", "--runtime", "onnxruntime"], "runtime"),
    ],
)
def test_bad_input_exits_2(args, message, tmp_path, capsys):
    code = run(["quantize", "--model", "digits-mlp", "--out", str(tmp_path / "q"), *args])
    assert code == 2
    assert message in capsys.readouterr().err
