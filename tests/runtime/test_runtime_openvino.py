"""The openvino format and runtime: OpenVINO IR (.xml + .bin) written by ``export``, loaded by
``torchslim.load``, outputs torch tensors close to the PyTorch model's.

Tolerances:
    fp32 IR         max |diff| <= 1e-4 + 1e-3 x max |logit| (the exporter's check), same top-1
    int8 (NNCF)     accuracy on digits within 1 point of the PyTorch model
    MiniLM (slow)   per-sentence cosine to PyTorch on real test sentences cut to 1, 7, 13, 64
                    and 128 tokens, batches 1 and 5 (padding masked): fp32 >= 0.9999, int8 >= 0.99
                    (random token ids of the vocabulary are out of distribution: int8 measured
                    0.9897 on them at 1 x 128)
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch

pytest.importorskip("openvino")
os.environ.setdefault("TORCHSLIM_CACHE", str(Path(tempfile.gettempdir()) / "torchslim-test-cache"))

from torchslim.artifacts import artifact_size, load, read_manifest  # noqa: E402
from torchslim.bench import accuracy  # noqa: E402
from torchslim.cli import run  # noqa: E402
from torchslim.errors import ConfigError  # noqa: E402
from torchslim.export import ArtifactInfo, export, validate_step  # noqa: E402

ACCURACY_POINTS = 0.01


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    from torchslim.specs import resolve

    handle, bundle = resolve("digits-cnn", "digits", log=lambda _m: None)
    model = handle.model.eval()
    folder = tmp_path_factory.mktemp("openvino")
    fp32 = export(model, folder / "fp32", bundle.example_inputs(2), {"format": "openvino"})
    return model, bundle, fp32, folder


def test_fp32_ir_loads_and_matches_pytorch(digits):
    model, bundle, path, _ = digits
    assert path.suffix == ".xml" and path.with_suffix(".bin").is_file()
    manifest = read_manifest(path)
    assert (manifest.format, manifest.runtime, manifest.extra["precision"]) == ("openvino", "openvino", "fp32")
    # Sizes count the weights: the .xml alone is a few kB of graph.
    assert artifact_size(path) == path.stat().st_size + path.with_suffix(".bin").stat().st_size
    assert manifest.extra["weights_bytes"] > 0.9 * sum(p.numel() * 4 for p in model.parameters())
    fn = load(path)
    x = bundle.example_inputs(7)[0]
    out = fn(x)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == (7, 10)
    with torch.no_grad():
        expected = model(x)
    assert (out - expected).abs().max() <= 1e-4 + 1e-3 * expected.abs().max()
    assert torch.equal(fn(input=x), out)  # inputs may also be passed by their manifest names
    assert accuracy(fn, bundle.test) == pytest.approx(accuracy(model, bundle.test), abs=1e-9)


def test_runtime_uses_torch_threads_and_latency_hint(digits):
    fn = load(digits[2])
    assert fn.compiled.get_property("INFERENCE_NUM_THREADS") == torch.get_num_threads()
    assert str(fn.compiled.get_property("PERFORMANCE_HINT")) in ("LATENCY", "PerformanceMode.LATENCY")


def test_int8_is_quantized_and_keeps_accuracy(digits):
    model, bundle, fp32, folder = digits
    path = export(model, folder / "int8", bundle.example_inputs(2),
                  {"format": "openvino", "quantize": "int8", "calibration_batches": 8}, data=bundle)
    manifest = read_manifest(path)
    assert manifest.extra["precision"] == "int8" and manifest.extra["quantization"]["fake_quantize_ops"] > 0
    assert artifact_size(path) < 0.5 * artifact_size(fp32)  # int8 weights, not fp32 ones
    fn = load(path)
    assert accuracy(fn, bundle.test) >= accuracy(model, bundle.test) - ACCURACY_POINTS


def test_step_options():
    assert validate_step({"format": "openvino", "quantize": "int8"}).describe() == \
        "export(format=openvino, quantize=static, precision=int8)"
    assert validate_step({"format": "openvino", "precision": "bf16"}).precision == "bf16"
    for bad in ({"format": "openvino", "quantize": "dynamic"}, {"format": "onnx", "quantize": "int8"},
                {"format": "openvino", "precision": "fp16"}):
        with pytest.raises(ConfigError):
            validate_step(bad)


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_damaged_weights_exit_2_with_a_message(digits, tmp_path, capsys, damage):
    import shutil

    source = digits[2]
    for suffix in (".xml", ".bin", ".xml.json"):
        shutil.copy(str(source).removesuffix(".xml") + suffix, tmp_path / f"model{suffix}")
    weights = tmp_path / "model.bin"
    if damage == "missing":
        weights.unlink()
    else:
        weights.write_bytes(weights.read_bytes()[:1000])
    assert run(["bench", "--model", str(tmp_path / "model.xml"), "--data", "digits"]) == 2
    text = " ".join((lambda c: c.err + c.out)(capsys.readouterr()).split())
    assert "Traceback" not in text
    # The manifest's SHA-256 of the .bin catches both before OpenVINO reads anything.
    if damage == "missing":
        assert "model.bin" in text and "missing" in text
    else:
        assert "digest" in text and "model.bin" in text


@pytest.mark.slow
def test_nncf_calibrates_on_samples_each_sentence_at_its_own_length():
    from torchslim.export._common import calibration_samples

    ids = torch.arange(12).reshape(3, 4)
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]])
    samples = calibration_samples([(ids, mask), (ids[:1], mask[:1])], ["input_ids", "attention_mask"])
    assert [tuple(s[0].shape) for s in samples] == [(1, 3), (1, 1), (1, 4), (1, 3)]
    assert samples[1][0].tolist() == [[4]] and samples[1][1].tolist() == [[1]]
    images = calibration_samples([(torch.randn(5, 1, 8, 8),)], ["input"])  # no mask: one item per sample
    assert len(images) == 5 and images[0][0].shape == (1, 1, 8, 8)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", pytest.param("int8", marks=pytest.mark.heavy)])  # int8: `make test-heavy`
def test_minilm_any_length_and_batch(minilm, tmp_path, precision):
    handle, bundle = minilm
    model = handle.model.eval()
    example = bundle.example_inputs(2)
    options = {"quantize": "int8", "calibration_batches": 4} if precision == "int8" else {}
    floor = 0.99 if precision == "int8" else 0.9999
    artifact = load(export(model, tmp_path / precision, example, {"format": "openvino", **options},
                           data=bundle if options else None, info=ArtifactInfo(bundle.task, handle.hf.input_names)))
    ids, real_mask = bundle.example_inputs(5)  # real held-out sentences, padded to 128
    for batch in (1, 5):
        for length in (1, 7, 13, 64, 128):
            # The sentences cut to `length` tokens, their own padding masked.
            tokens, mask = ids[:batch, :length], real_mask[:batch, :length]
            with torch.no_grad():
                expected = model(tokens, mask)
            cosine = torch.nn.functional.cosine_similarity(artifact(tokens, mask), expected, dim=1)
            assert cosine.min() >= floor, f"{precision} at batch {batch} x {length} tokens: cosine {cosine.min():.4f}"
