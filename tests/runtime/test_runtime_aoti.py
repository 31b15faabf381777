"""The aoti runtime: an AOTInductor package compiled once (20-60 s on a small CPU), loaded
back through torchslim.load with a dynamic batch, outputs equal to eager within fp32
tolerance, and measured by the harness's memory probe."""

from __future__ import annotations

import pytest
import torch

from torchslim.artifacts import load, read_manifest
from torchslim.errors import ConfigError, ExportError, UnsupportedError
from torchslim.export import export


@pytest.mark.slow
def test_aoti_package_round_trip(tmp_path):
    from torchslim.bench import accuracy, peak_memory
    from torchslim.specs import resolve

    handle, bundle = resolve("digits-mlp", "digits", log=lambda _m: None)
    model = handle.model.eval()
    path = export(model, tmp_path, bundle.example_inputs(2), {"format": "pt2"})
    manifest = read_manifest(path)
    assert path.suffix == ".pt2" and manifest.format == "aoti" and manifest.runtime == "aoti"
    assert manifest.extra["device"] == "cpu" and manifest.extra["parity"]["ok"]
    fn = load(path)
    for batch_size in (1, 5, 64):
        inputs = bundle.example_inputs(batch_size)
        with torch.no_grad():
            expected = model(*inputs)
        assert torch.allclose(fn(*inputs), expected, atol=1e-4 + 1e-3 * float(expected.abs().max()))
    assert accuracy(fn, bundle.test) == pytest.approx(accuracy(model, bundle.test), abs=1e-9)
    assert peak_memory(path, 32) > 0  # the fresh-process probe loads the package too
    with pytest.raises(UnsupportedError, match="compiled for cpu"):
        load(path, device="cuda")


def test_pt2_rejects_what_it_cannot_do(tmp_path):
    with pytest.raises(ConfigError, match="quantize step"):
        export(torch.nn.Linear(4, 2), tmp_path, (torch.randn(2, 4),), {"format": "pt2", "quantize": "static"})


def test_unexportable_model_fails_before_compiling(tmp_path):
    class Branchy(torch.nn.Module):
        def forward(self, x):
            return x * 2 if x.max() > 0 else x

    with pytest.raises(ExportError, match="torch.export could not capture Branchy"):
        export(Branchy(), tmp_path, (torch.randn(2, 4),), {"format": "pt2"})
