"""The onnxruntime runtime: loads through torchslim.load, takes/returns torch tensors, works
with the measurement harness (latency, subprocess memory probe) like every runtime."""

from __future__ import annotations

import json

import pytest
import torch

from torchslim.artifacts import load, manifest_path, read_manifest
from torchslim.errors import ArtifactError
from torchslim.export import ArtifactInfo, export
from torchslim.runtime import get_runtime


class TwoHeads(torch.nn.Module):
    """Two inputs (float, int64) and two outputs, to check names and order end to end."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 3)
        self.embed = torch.nn.Embedding(10, 3)

    def forward(self, x, ids):
        return self.fc(x), self.embed(ids).sum(1)


@pytest.fixture(scope="module")
def two_heads(tmp_path_factory):
    model = TwoHeads().eval()
    example = (torch.randn(2, 4), torch.randint(0, 10, (2, 5)))
    return model, export(model, tmp_path_factory.mktemp("two"), example,
                         info=ArtifactInfo(input_names=["features", "tokens"]))


def test_load_returns_torch_outputs_in_the_models_order(two_heads):
    model, path = two_heads
    fn = load(path)
    x, ids = torch.randn(6, 4), torch.randint(0, 10, (6, 7))  # any batch, any length up to the example's 8
    first, second = fn(x, ids)
    assert isinstance(first, torch.Tensor) and first.dtype == torch.float32
    with torch.no_grad():
        expected = model(x, ids)
    assert torch.allclose(first, expected[0], atol=1e-5) and torch.allclose(second, expected[1], atol=1e-5)
    named = fn(features=x, tokens=ids)  # inputs may also be passed by their manifest names
    assert torch.allclose(named[0], first)
    assert read_manifest(path).extra["output_names"] == ["output_0", "output_1"]


def test_session_uses_full_optimization_and_torch_threads(two_heads):
    import onnxruntime as ort

    fn = load(two_heads[1])
    assert fn.session.get_providers() == ["CPUExecutionProvider"]
    options = fn.session.get_session_options()
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert options.intra_op_num_threads == torch.get_num_threads()


def test_wrong_inputs_and_mismatched_files(two_heads, tmp_path):
    _, path = two_heads
    with pytest.raises(TypeError, match="takes 2 inputs"):
        load(path)(torch.randn(1, 4))
    with pytest.raises(ArtifactError, match="not 'exported'"):
        manifest = read_manifest(path)
        manifest.format = "exported"
        get_runtime("onnxruntime").load(path, manifest)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    manifest_path(broken).write_text(manifest_path(path).read_text())
    with pytest.raises(ArtifactError, match="incomplete|digest"):  # the manifest names another file
        load(broken)
    legacy = json.loads(manifest_path(path).read_text())
    legacy.pop("sha256")  # a manifest from before digests: the runtime itself must refuse the bytes
    manifest_path(broken).write_text(json.dumps(legacy))
    with pytest.warns(UserWarning, match="digests"), pytest.raises(ArtifactError, match="cannot load"):
        load(broken)


@pytest.mark.slow
def test_bench_measures_onnx_like_every_runtime():
    """``torchslim.benchmark(..., runtime="onnxruntime")`` exports, loads and measures,
    including the fresh-process memory probe."""
    from torchslim.bench import benchmark

    metrics = benchmark("digits-mlp", "digits", batch_sizes=(1, 8), runtime="onnxruntime", device="cpu")
    assert metrics.runtime == "onnxruntime"
    assert metrics.accuracy > 0.9
    assert metrics.peak_memory_bytes > 0 and metrics.size_bytes > 100_000
    assert set(metrics.latency_ms) == {"1", "8"}
