"""ONNX export + ONNX Runtime, over every zoo model: applies, saves, loads back through
``torchslim.load``, outputs close to fp32, int8 accuracy on digits within 1 point.

Tolerances (stated once, enforced by the exporter and re-checked here):
    fp32 ONNX      max |diff| <= 1e-4 + 1e-3 x max |logit|, same top-1 accuracy
    int8 (ORT)     cosine >= 0.98 to the fp32 outputs, accuracy within 1 point of fp32
                   (dynamic, static, and weight-only: int8 weights with float compute)
"""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
import torch

from torchslim import zoo
from torchslim.artifacts import load, read_manifest
from torchslim.bench import accuracy
from torchslim.errors import ArtifactError, ConfigError, DataError, ExportError
from torchslim.export import (
    ArtifactInfo,
    export,
    onnx_param_count,
    quantize_onnx,
    resolve_format,
    run_step,
    validate_step,
)

ACCURACY_POINTS = 0.01


@pytest.fixture(scope="module")
def trained():
    """name -> (trained model, digits bundle); zoo models train once into the shared cache."""
    from torchslim.specs import resolve

    cache = {}

    def get(name: str):
        if name not in cache:
            handle, bundle = resolve(name, "digits", log=lambda _m: None)
            cache[name] = (handle.model.eval(), bundle)
        return cache[name]

    return get


@pytest.fixture(scope="module")
def fp32_exports(trained, tmp_path_factory):
    """name -> the fp32 ONNX artifact (one export per model, shared by the quantized tests)."""
    folder = tmp_path_factory.mktemp("onnx")
    cache = {}

    def get(name: str) -> Path:
        if name not in cache:
            model, bundle = trained(name)
            cache[name] = export(model, folder / name, bundle.example_inputs(2), "onnx")
        return cache[name]

    return get


def _max_diff(fn, model, inputs) -> float:
    with torch.no_grad():
        return float((fn(*inputs) - model(*inputs)).abs().max())


@pytest.mark.parametrize("name", [pytest.param(n, marks=[] if n == "digits-cnn" else pytest.mark.slow) for n in zoo.list_models()])
def test_onnx_fp32_round_trip(name, trained, fp32_exports):
    model, bundle = trained(name)
    path = fp32_exports(name)
    manifest = read_manifest(path)
    assert path.suffix == ".onnx" and manifest.format == "onnx" and manifest.runtime == "onnxruntime"
    assert not list(path.parent.glob("*.data")), "the ONNX file must be self-contained"
    onnx.checker.check_model(str(path))
    # no stack traces: they would ship the paths of the user's source files inside the artifact
    assert b"zoo/" not in path.read_bytes() and b"stack_trace" not in path.read_bytes()
    assert manifest.extra["dynamic_axes"] == {"input": [0]}
    assert manifest.extra["parity"]["ok"] and manifest.extra["parity"]["max_abs_diff"] < 1e-3
    fn = load(path)
    for batch_size in (1, 7, 32):  # other batch sizes than the export's example
        inputs = bundle.example_inputs(batch_size)
        with torch.no_grad():
            scale = float(model(*inputs).abs().max())
        assert _max_diff(fn, model, inputs) <= 1e-4 + 1e-3 * scale
    assert accuracy(fn, bundle.test) == pytest.approx(accuracy(model, bundle.test), abs=1e-9)
    params = sum(p.numel() for p in model.parameters())
    # ONNX folds BatchNorm into convolutions, so counts may shrink a little, never grow.
    assert 0.9 * params <= onnx_param_count(path) <= 1.001 * params


@pytest.mark.parametrize("method", ["dynamic", "static", "weight-only"])
@pytest.mark.parametrize("name", [pytest.param(n, marks=[] if n == "digits-cnn" else pytest.mark.slow)
                                  for n in ("digits-cnn", "resnet-mini", "tiny-transformer", "digits-mlp")])
def test_onnx_int8_accuracy_within_one_point(name, method, trained, fp32_exports, tmp_path):
    model, bundle = trained(name)
    source = fp32_exports(name)
    path = quantize_onnx(source, tmp_path / "int8.onnx", method, data=bundle if method == "static" else None,
                         inputs=bundle.example_inputs(16))
    manifest = read_manifest(path)
    assert manifest.extra["quantize"] == method and manifest.extra["precision"] == "int8"
    assert manifest.extra["quantization"]["int8_weight_tensors"] > 0
    assert manifest.extra["parity"]["cosine"] >= 0.98
    assert path.stat().st_size < 0.5 * source.stat().st_size  # int8 weights: really smaller on disk
    fn = load(path)
    assert accuracy(fn, bundle.test) >= accuracy(model, bundle.test) - ACCURACY_POINTS
    assert fn(*bundle.example_inputs(5)).shape == (5, 10)


def test_export_static_step_end_to_end(trained, tmp_path):
    """The recipe step: writes into the work dir, names its runtime, model passes through."""
    from torchslim.core.step import StepContext

    model, bundle = trained("digits-cnn")
    config = validate_step({"format": "onnx", "quantize": "static", "calibration_batches": 4})
    assert config.precision == "int8"
    ctx = StepContext(data=bundle, device=torch.device("cpu"), teacher=model, work_dir=tmp_path,
                      example_inputs=bundle.example_inputs(2), log=lambda _m: None)
    output = run_step(model, config, ctx)
    assert output.model is model and output.runtime == "onnxruntime"
    assert output.artifact.parent == tmp_path and output.artifact.exists()
    manifest = read_manifest(output.artifact)
    assert manifest.extra["quantization"]["calibration_batches"] == 4
    assert manifest.steps == ["export(format=onnx, quantize=static, precision=int8)"]
    assert "cosine" in output.notes[0]
    assert accuracy(load(output.artifact), bundle.test) >= accuracy(model, bundle.test) - ACCURACY_POINTS


def test_token_inputs_get_dynamic_batch_and_sequence(tmp_path):
    """Two int64 inputs (like a Hugging Face wrapper's input_ids, attention_mask)."""

    class Bag(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(50, 16)
            self.head = torch.nn.Linear(16, 3)

        def forward(self, input_ids, attention_mask):
            mask = attention_mask.unsqueeze(-1).float()
            return self.head((self.embed(input_ids) * mask).sum(1) / mask.sum(1).clamp(min=1))

    model = Bag().eval()
    ids, mask = torch.randint(0, 50, (2, 12)), torch.ones(2, 12, dtype=torch.int64)
    path = export(model, tmp_path, (ids, mask), info=ArtifactInfo(input_names=["input_ids", "attention_mask"]))
    manifest = read_manifest(path)
    assert [s.name for s in manifest.inputs] == ["input_ids", "attention_mask"]
    assert manifest.extra["dynamic_axes"] == {"input_ids": [0, 1], "attention_mask": [0, 1]}
    fn = load(path)
    ids, mask = torch.randint(0, 50, (5, 7)), torch.randint(0, 2, (5, 7))
    assert _max_diff(fn, model, (ids, mask)) < 1e-4
    # The model states no maximum length, so the example's (12) is the longest it accepts.
    with pytest.raises(ArtifactError, match=r"1\.\.12"):
        fn(torch.randint(0, 50, (5, 20)), torch.ones(5, 20, dtype=torch.int64))


class DataDependent(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(64, 10)

    def forward(self, x):
        if x.sum() > 0:  # Python branch on tensor data: not exportable
            return self.fc(x.flatten(1))
        return -self.fc(x.flatten(1))


class PinnedBatch(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(64, 10)

    def forward(self, x):
        return self.fc(x.reshape(2, -1))  # the example's batch size, hard-coded


def test_unexportable_model_gives_the_exporters_reason(tmp_path):
    with pytest.raises(ExportError) as info:
        export(DataDependent(), tmp_path, (torch.randn(2, 1, 8, 8),))
    message = info.value.message
    assert "\n" not in message  # one paragraph
    assert "data-dependent" in message and "if x.sum() > 0" in message
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_hard_coded_batch_size_is_caught(tmp_path):
    with pytest.raises(ExportError, match="batch"):
        export(PinnedBatch(), tmp_path, (torch.randn(2, 1, 8, 8),))


def test_calibration_of_the_wrong_shape(tmp_path):
    model = zoo.create_model("digits-mlp").eval()
    bad = [(torch.randn(4, 3, 8, 8),)]
    with pytest.raises(DataError, match=r"float32\[4, 3, 8, 8\].*float32\[N, 1, 8, 8\]"):
        export(model, tmp_path, (torch.randn(2, 1, 8, 8),), {"quantize": "static"}, data=bad)
    with pytest.raises(DataError, match="2 input|takes"):
        export(model, tmp_path, (torch.randn(2, 1, 8, 8),), {"quantize": "static"},
               data=[(torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8))])
    with pytest.raises(ConfigError, match="none was given: pass data="):
        export(model, tmp_path, (torch.randn(2, 1, 8, 8),), {"quantize": "static"})


@pytest.mark.parametrize("options, field", [
    ({"format": "gif"}, "format"),
    ({"quantize": "int4"}, "quantize"),
    ({"calibration_batches": 0}, "calibration_batches"),
    ({"format": "pt2", "quantize": "dynamic"}, "quantize step"),
    ({"format": "tensorrt", "quantize": "dynamic"}, "dynamic"),
    ({"format": "onnx", "precision": "fp16"}, "fp16"),
    ({"format": "onnx", "color": "red"}, "color"),
])
def test_step_options_are_validated(options, field):
    with pytest.raises(ConfigError, match=field):
        validate_step(options)


def test_step_accepts_a_bare_format_and_fills_precision():
    assert validate_step("pt2").format == "pt2"
    assert validate_step({"format": "tensorrt", "precision": "int8"}).quantize == "static"
    assert validate_step(None).describe() == "export(format=onnx, precision=fp32)"


def test_export_rejects_unexportable_runtime_names(tmp_path):
    with pytest.raises(ConfigError, match="save_exported"):
        resolve_format(None, "eager")
    with pytest.raises(ConfigError, match="suffix"):
        export(torch.nn.Linear(2, 2), tmp_path / "model.pt2", (torch.randn(2, 2),), {"format": "onnx"})


def test_quantizing_an_export_with_external_data(trained, fp32_exports, tmp_path):
    """quant_pre_process fails on dynamo exports saved with external data; torchslim loads the
    weights and quantizes one inline model, and writes a self-contained file."""
    from torchslim.artifacts import write_manifest

    _, bundle = trained("digits-cnn")
    source = fp32_exports("digits-cnn")
    split = tmp_path / "split" / "model.onnx"
    split.parent.mkdir()
    onnx.save_model(onnx.load(str(source)), str(split), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="model.onnx.data", size_threshold=0)
    write_manifest(split, read_manifest(source), side_files=["model.onnx.data"])  # as torchslim writes a split model
    assert (split.parent / "model.onnx.data").stat().st_size > split.stat().st_size
    path = quantize_onnx(split, tmp_path / "int8" / "model.onnx", {"quantize": "static", "calibration_batches": 4},
                         data=bundle)
    assert not list(path.parent.glob("*.data"))
    assert read_manifest(path).extra["quantization"]["preprocessing"].startswith("quant_pre_process")
    assert load(path)(*bundle.example_inputs(3)).shape == (3, 10)


class ActivationOutlier(torch.nn.Module):
    """One hidden channel 1000x the others that the output ignores: per-tensor static int8 of
    the second layer's input rounds every other channel to zero (what MiniLM's outliers do)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc1, self.fc2 = torch.nn.Linear(64, 64), torch.nn.Linear(64, 10)
        with torch.no_grad():
            self.fc1.weight[0] *= 5000.0
            self.fc1.bias[0] = 5000.0
            self.fc2.weight[:, 0] = 0.0

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


def test_static_int8_that_diverges_is_refused_not_written(trained, tmp_path):
    _model, bundle = trained("digits-cnn")
    with pytest.raises(ExportError, match="does not match PyTorch"):
        export(ActivationOutlier().eval(), tmp_path / "out", bundle.example_inputs(2),
               {"format": "onnx", "quantize": "static", "calibration_batches": 2}, data=bundle)
    assert not list(tmp_path.rglob("*.onnx"))  # nothing half-written left behind
