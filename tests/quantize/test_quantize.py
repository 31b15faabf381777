"""Quantization contract over every method and the zoo: applies, never mutates its input,
saves to a real file, loads back through ``torchslim.load``, stays close to fp32.

Thresholds (mean cosine of test-set logits to fp32; int8 accuracy within 1 point of fp32):
    dynamic >= 0.99   weight-only >= 0.995   static >= 0.98   qat >= 0.95
    bf16 >= 0.995     fp16 >= 0.999
"""

from __future__ import annotations

import copy
import zipfile

import pytest
import torch
import torch.nn.functional as F

import torchslim
from tests._quant_fixtures import trained
from torchslim.artifacts import read_manifest, save_exported
from torchslim.bench import accuracy, predict
from torchslim.data import DataBundle
from torchslim.errors import ConfigError, DataError, UnsupportedError
from torchslim.quantize import (
    CastConfig,
    StaticInt8Config,
    fast_runtime,
    parse_config,
    quantize,
    run_step,
    validate_step,
)
from torchslim.quantize._step import linear_share

COSINE = {"dynamic": 0.99, "weight-only": 0.995, "static": 0.98, "qat": 0.95, "bf16": 0.995, "fp16": 0.999}
INT8 = {"dynamic", "weight-only", "static", "qat"}
EAGER_METHODS = ["dynamic", "weight-only", "static", "bf16", "fp16"]


def _cosine(fn, reference, bundle) -> float:
    out, _ = predict(fn, bundle.test)
    ref, _ = predict(reference, bundle.test)
    return float(F.cosine_similarity(out, ref, dim=1).mean())


def _weight_bytes(path) -> int:
    """Bytes of the tensors stored in a .pt2 archive (weights and constants, not the graph)."""
    with zipfile.ZipFile(path) as archive:
        return sum(i.file_size for i in archive.infolist() if "/data/weights/" in i.filename
                   or "/data/constants/" in i.filename)


def _contract(name: str, method: str, tmp_path, options: dict | None = None) -> None:
    model, bundle = trained(name)
    before = copy.deepcopy(model.state_dict())
    quantized = quantize(model, options or {"method": method}, data=bundle)
    for key, value in model.state_dict().items():  # the caller's model is untouched
        assert torch.equal(value, before[key]), key
    example = bundle.example_inputs(2)
    fp32_path = save_exported(model, tmp_path / "fp32.pt2", example)
    path = save_exported(quantized, tmp_path / f"{method}.pt2", example, runtime="eager")
    loaded = torchslim.load(path)
    cosine = _cosine(loaded, model, bundle)
    assert cosine >= COSINE[method], f"{name}/{method}: cosine {cosine:.4f} < {COSINE[method]}"
    base, acc = accuracy(model, bundle.test), accuracy(loaded, bundle.test)
    if method in INT8:
        assert acc >= base - 0.01, f"{name}/{method}: accuracy {acc:.4f} vs fp32 {base:.4f}"
    # Low-precision weights are stored as such: the weight payload of the file shrinks. The whole
    # file need not: torchao graphs hold ~3x the nodes of the fp32 one, and on the tiny zoo
    # models that JSON outweighs the weights (a finding reported by benchmarks/quantize.py).
    ratio = _weight_bytes(path) / _weight_bytes(fp32_path)
    if method in ("dynamic", "weight-only") and linear_share(model) < 0.5:
        assert ratio < 1.0  # only the Linear layers (a CNN's head) are int8
    else:
        assert ratio < {"bf16": 0.55, "fp16": 0.55}.get(method, 0.5), f"{name}/{method}: weights {ratio:.2f}x fp32"
    if method in ("static", "qat", "bf16", "fp16"):
        assert path.stat().st_size < fp32_path.stat().st_size
    out = loaded(*bundle.example_inputs(1))  # batch 1 works although exported with batch 2
    assert out.shape == (1, bundle.num_classes) and out.dtype == torch.float32


@pytest.mark.parametrize("method", EAGER_METHODS)
def test_every_method_on_mlp(method, tmp_path):
    _contract("digits-mlp", method, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["digits-cnn", "resnet-mini", "tiny-transformer"])
@pytest.mark.parametrize("method", EAGER_METHODS)
def test_every_method_on_zoo(name, method, tmp_path):
    _contract(name, method, tmp_path)


@pytest.mark.slow
def test_qat(tmp_path):
    _contract("digits-mlp", "qat", tmp_path, {"method": "qat", "epochs": 1, "lr": 1e-4})


def test_static_int8_weights_are_int8():
    model, bundle = trained("digits-mlp")
    quantized = quantize(model, StaticInt8Config(calibration_batches=4), data=bundle)
    dtypes = {t.dtype for t in list(quantized.parameters()) + list(quantized.buffers()) if t.numel() >= 1024}
    assert dtypes == {torch.int8}, dtypes  # no float copy of a weight matrix left behind


def test_skip_by_name_and_type():
    model, bundle = trained("tiny-transformer")
    quantized = quantize(model, {"method": "dynamic", "skip": ["head", "SelfAttention"]}, data=bundle)
    assert type(quantized.head.weight) is torch.nn.Parameter  # skipped by name: still float
    assert type(quantized.layers[0].attn.q.weight) is torch.nn.Parameter  # skipped by class
    assert type(quantized.layers[0].ffn[0].weight).__module__.startswith("torchao")
    cast = quantize(model, CastConfig(method="bf16", skip=("head",)), data=bundle)
    assert cast.head.weight.dtype == torch.float32 and cast.embed.weight.dtype == torch.bfloat16
    assert cast(*bundle.example_inputs(3)).dtype == torch.float32


def test_static_skip_list():
    model, bundle = trained("digits-mlp")

    def int8_layers(graph):
        return sum("dequantize_per_channel" in str(n.target) for n in graph.graph.nodes)

    full = quantize(model, {"method": "static", "calibration_batches": 2}, data=bundle)
    part = quantize(model, {"method": "static", "calibration_batches": 2, "skip": ["net.1"]}, data=bundle)
    assert int8_layers(full) == 3 and int8_layers(part) == 2
    with pytest.raises(ConfigError, match="nothing to quantize"):  # never a silent no-op
        quantize(model, {"method": "static", "calibration_batches": 2, "skip": ["Linear"]}, data=bundle)


def test_bf16_leaves_integer_inputs_alone():
    class Embedder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(10, 8)
            self.head = torch.nn.Linear(8, 2)

        def forward(self, ids, mask):
            return self.head((self.emb(ids) * mask.unsqueeze(-1)).mean(1))

    ids, mask = torch.randint(0, 10, (2, 5)), torch.ones(2, 5, dtype=torch.int64)
    quantized = quantize(Embedder(), "bf16", example_inputs=(ids, mask))
    assert quantized(ids, mask).dtype == torch.float32


def test_bad_configs_name_the_field():
    with pytest.raises(ConfigError, match="method"):
        parse_config({"method": "int3"})
    with pytest.raises(ConfigError, match="calibration_batches"):
        validate_step({"method": "static", "calibration_batches": 0})
    with pytest.raises(ConfigError, match="bits"):
        validate_step({"method": "dynamic", "bits": 8})
    assert validate_step("bf16") == CastConfig(method="bf16")
    assert validate_step({"method": "qat", "epochs": 2, "lr": 1e-3, "skip": "head,embed"}).skip == ("head", "embed")


def test_unknown_skip_entry_is_an_error():
    model, bundle = trained("digits-mlp")
    with pytest.raises(ConfigError, match="nonexistent"):
        quantize(model, {"method": "dynamic", "skip": ["nonexistent"]}, data=bundle)


def test_int4_on_cpu_says_so():
    model, bundle = trained("digits-mlp")
    with pytest.raises(UnsupportedError, match="int4.*CPU"):
        quantize(model, "int4", data=bundle)


def test_calibration_data_of_the_wrong_shape():
    model, bundle = trained("digits-cnn")
    wrong = torch.utils.data.TensorDataset(torch.randn(64, 1, 6, 6), torch.zeros(64, dtype=torch.int64))
    bad = DataBundle(spec="wrong", train=wrong, val=wrong, test=wrong, num_classes=10, input_shape=(1, 6, 6))
    with pytest.raises(DataError, match=r"is \(float32\[2, 1, 6, 6\]\), but the model takes \(float32\[N, 1, 8, 8\]\)"):
        quantize(model, "static", data=bad, example_inputs=bundle.example_inputs(2))


def test_run_step_records_the_fast_runtime(tmp_path):
    from torchslim.core.step import StepContext

    model, bundle = trained("digits-mlp")
    ctx = StepContext(data=bundle, device=torch.device("cpu"), teacher=model, work_dir=tmp_path,
                      example_inputs=bundle.example_inputs(2), log=lambda _m: None)
    output = run_step(model, validate_step({"method": "static", "calibration_batches": 2}), ctx)
    assert output.runtime == fast_runtime("static") == "compile"
    path = save_exported(output.model, tmp_path / "m.pt2", ctx.example_inputs, runtime=output.runtime)
    assert read_manifest(path).runtime == "compile"


def test_recurrent_layers_use_the_legacy_path_quietly(recwarn):
    class Tagger(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = torch.nn.LSTM(8, 16, batch_first=True)
            self.head = torch.nn.Linear(16, 3)

        def forward(self, x):
            return self.head(self.rnn(x)[0][:, -1])

    model, x = Tagger().eval(), torch.randn(4, 5, 8)
    quantized = quantize(model, "dynamic", example_inputs=(x,))
    assert type(quantized.rnn).__module__.startswith("torch.ao.nn.quantized")
    assert type(quantized.head.weight).__module__.startswith("torchao")
    assert F.cosine_similarity(quantized(x), model(x), dim=1).min() >= 0.99
    assert not [w for w in recwarn if "torch.ao" in str(w.message) or issubclass(w.category, DeprecationWarning)]
