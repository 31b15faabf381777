"""The ``compile`` runtime: any exported artifact (fp32 too) runs through torch.compile with
inductor freezing, per batch size, matching the eager runtime's outputs.

Tolerances: fp32 compiled vs eager max |diff| <= 1e-4 (+1e-4 relative);
static int8 compiled vs fp32 cosine >= 0.98 and accuracy within 1 point.
Each test compiles (15-20 s cold), so they are few and marked slow.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import torchslim
from tests._quant_fixtures import trained
from torchslim.artifacts import save_exported
from torchslim.bench import accuracy
from torchslim.errors import ArtifactError
from torchslim.quantize import quantize
from torchslim.runtime.compiled import CompiledModel


@pytest.mark.slow
def test_fp32_artifact_compiles_and_matches_eager(tmp_path):
    model, bundle = trained("digits-mlp")
    path = save_exported(model, tmp_path / "fp32.pt2", bundle.example_inputs(2), runtime="compile")
    compiled = torchslim.load(path)  # the runtime recorded in the manifest
    assert isinstance(compiled, CompiledModel)
    eager = torchslim.load(path, runtime="eager")
    for batch in (1, 5):  # a new batch size compiles a new graph instead of failing
        x = bundle.example_inputs(batch)
        torch.testing.assert_close(compiled(*x), eager(*x), atol=1e-4, rtol=1e-4)
    compiled.eval()  # accuracy() may switch modes; the runtime stays in inference
    with pytest.raises(ArtifactError):
        compiled.train()


@pytest.mark.slow
def test_static_int8_on_compile(tmp_path):
    model, bundle = trained("digits-cnn")
    int8 = quantize(model, {"method": "static", "calibration_batches": 8}, data=bundle)
    path = save_exported(int8, tmp_path / "static.pt2", bundle.example_inputs(2), runtime="compile")
    compiled = torchslim.load(path)
    (x,) = bundle.example_inputs(32)
    cosine = F.cosine_similarity(compiled(x), model(x), dim=1).mean()
    assert cosine >= 0.98
    assert accuracy(compiled, bundle.test, batch_size=120) >= accuracy(model, bundle.test) - 0.01


@pytest.mark.slow
def test_bf16_on_compile(tmp_path):
    model, bundle = trained("tiny-transformer")
    cast = quantize(model, "bf16", data=bundle)
    path = save_exported(cast, tmp_path / "bf16.pt2", bundle.example_inputs(2), runtime="compile")
    x = bundle.example_inputs(4)
    out = torchslim.load(path)(*x)
    assert out.dtype == torch.float32
    assert F.cosine_similarity(out, model(x[0]), dim=1).mean() >= 0.995


def test_flop_counting_sees_the_eager_program_and_compiles_nothing(tmp_path):
    """Counting MACs on a compiled artifact must not compile under the counter's dispatch mode:
    that graph was guarded on the mode and every later call recompiled without freezing (PT2E
    int8 MiniLM: 46.7 ms instead of 5.6 ms at batch 1 inside optimize)."""
    from torchslim.bench import count_macs
    from torchslim.zoo import create_model

    model = create_model("digits-mlp").eval()
    path = save_exported(model, tmp_path / "m.pt2", (torch.randn(2, 64),), runtime="compile")
    fn = torchslim.load(path)
    assert isinstance(fn, CompiledModel)
    assert count_macs(fn, (torch.randn(1, 64),)) == count_macs(model, (torch.randn(1, 64),)) > 0
    assert fn._seen == set()  # nothing was compiled while counting
