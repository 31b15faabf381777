"""``torchslim quantize``: a one-candidate recipe (report.json, artifact, table); bad input exits 2."""

from __future__ import annotations

import pytest

from tests._quant_fixtures import trained
from torchslim.artifacts import read_manifest
from torchslim.cli import run
from torchslim.report import load_report


@pytest.fixture(scope="module", autouse=True)
def _trained_mlp():
    trained("digits-mlp")  # the CLI resolves the same cached weights


@pytest.mark.slow
def test_quantize_writes_and_measures(tmp_path, capsys):
    out = tmp_path / "q"
    code = run(["quantize", "--model", "digits-mlp", "--method", "dynamic", "--runtime", "eager",
                "--batch-sizes", "1", "--out", str(out)])
    assert code == 0
    report = load_report(out)  # a one-candidate recipe: the same report.json as optimize
    cand = report.candidate("quantize-dynamic")
    assert cand.status == "ok" and cand.metrics.runtime == "eager"
    manifest = read_manifest(out / cand.artifact)
    assert manifest.runtime == "eager" and manifest.steps == ["quantize(method=dynamic)"]
    assert (out / "baseline.pt2").stat().st_size > (out / cand.artifact).stat().st_size
    printed = capsys.readouterr().out
    assert "baseline" in printed and "quantize-dynamic" in printed and "b=1" in printed


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
