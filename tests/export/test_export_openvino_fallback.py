"""OpenVINO int8 (NNCF) with SmoothQuant and accuracy-aware per-layer fallback
(``torchslim.export._openvino_quant``; recipe ``export: {format: openvino, quantize: int8,
fallback: auto}``): torch layers found among the converted ops, the kept layers left out of
NNCF's quantization in the written IR, the record in the manifest and the report, and the
options' validation in the step config, ``export()`` and the CLI.

The fallback tests force the metric: 1 - the summed cost (points) of the layers whose weights
are still int8 in the model NNCF just returned, so what is checked is what NNCF really did."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

pytest.importorskip("openvino")
pytest.importorskip("nncf")

from tests._quant_fixtures import check_real_fallback, trained  # noqa: E402
from torchslim.artifacts import read_manifest  # noqa: E402
from torchslim.cli import run  # noqa: E402
from torchslim.errors import ConfigError  # noqa: E402
from torchslim.export import ArtifactInfo, export, run_step, validate_step  # noqa: E402
from torchslim.export import _openvino_quant as ov_quant  # noqa: E402


def _context(bundle, model, tmp_path, budget=None):
    from torchslim.core.step import StepContext

    return StepContext(data=bundle, device=torch.device("cpu"), teacher=model, work_dir=tmp_path,
                       example_inputs=bundle.example_inputs(2, split="train"), log=lambda _m: None,
                       max_accuracy_drop=budget)


def _int8_weight(op) -> bool:
    """Whether the op's weight (input 1) comes through int8: a FakeQuantize, or an int8
    constant dequantized by Convert/Subtract/Multiply (how NNCF stores quantized weights)."""
    import openvino as ov

    int8 = {ov.Type.i8, ov.Type.u8, ov.Type.i4, ov.Type.u4}
    stack = [op.input_value(1).get_node()]
    while stack:
        node = stack.pop()
        kind = node.get_type_name()
        if kind == "FakeQuantize" or (kind == "Constant" and node.get_element_type() in int8):
            return True
        if kind in ("Convert", "Subtract", "Multiply", "Reshape", "Transpose"):
            stack.extend(v.get_node() for v in node.input_values())
    return False


def _float_layers(model, mapping: dict[str, list[str]]) -> set[str]:
    """The layers whose MatMul/Convolution reads a float weight in ``model`` (an ov.Model)."""
    ops = {op.get_friendly_name(): op for op in model.get_ordered_ops()}
    return {layer for layer, names in mapping.items() if any(not _int8_weight(ops[n]) for n in names)}


def _fake_fallback(monkeypatch, costs: dict[str, float]) -> dict:
    """Fake metric and ranking (the costs' order); returns the layer -> ops mapping the export used."""
    from torchslim.quantize import _fallback as fallback

    seen: dict = {}
    last: dict = {}
    real_layer_ops, real_quantize = ov_quant.layer_ops, ov_quant.quantize_model

    def spy_layers(model, module):
        seen.update(real_layer_ops(model, module))
        return dict(seen)

    def spy_quantize(model, run, ignored):
        last["model"] = real_quantize(model, run, ignored)
        return last["model"]

    def metric(_reference, _data, _device):
        def score(fn):
            if isinstance(fn, nn.Module):
                return 1.0  # the float torch model
            in_float = _float_layers(last["model"], seen)  # the try being measured is the last quantized
            return 1.0 - sum(c for layer, c in costs.items() if layer not in in_float) / 100
        return score

    def ranking(_model, layers, _score, _reference):
        return [(name, costs[name]) for name in costs if name in layers] + [(n, 0.0) for n in layers if n not in costs]

    monkeypatch.setattr(ov_quant, "layer_ops", spy_layers)
    monkeypatch.setattr(ov_quant, "quantize_model", spy_quantize)
    monkeypatch.setattr(fallback, "metric_fn", metric)
    monkeypatch.setattr(fallback, "rank_layers", ranking)
    return seen


@pytest.mark.parametrize("name, costs, kept, budget, max_layers, smoothquant", [
    # 1.2 points all-int8, target 0.3 (the recipe's budget caps the default 0.5): ffn.0 in float
    # leaves 0.4 -> q costs nothing: no gain, back to int8; 2 tries, the limit: the IR written is
    # ffn.0's try, not the last one. SmoothQuant auto: torchslim's, on a copy before the conversion.
    ("tiny-transformer", {"layers.0.ffn.0": 0.8, "layers.1.attn.q": 0.0, "head": 0.4}, ["layers.0.ffn.0"], 0.3, 2,
     "auto"),
    # 1.2 points, target 0.5: the stem in float leaves 0.3, within; Convs fused with their
    # BatchNorm by the converter are found too.
    ("resnet-mini", {"stem.0": 0.9, "fc": 0.3}, ["stem.0"], 1.0, 3, None),
])
def test_fallback_leaves_the_costly_layers_out_of_nncf(name, costs, kept, budget, max_layers, smoothquant,
                                                       monkeypatch, tmp_path):
    import openvino as ov

    model, bundle = trained(name)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    mapping = _fake_fallback(monkeypatch, costs)
    config = validate_step({"format": "openvino", "quantize": "int8", "calibration_batches": 1, "fallback": "auto",
                            "fallback_max_layers": max_layers, "smoothquant": smoothquant})
    out = run_step(model, config, _context(bundle, model, tmp_path, budget=budget))
    record = out.facts["fallback"].to_dict()  # the typed FallbackResult, as report.json holds it
    assert record["target_drop"] == min(budget, 0.5)
    assert record["quantized"] == pytest.approx(1 - sum(costs.values()) / 100)
    assert record["kept_in_float"] == kept
    assert record["within_target"] == (len(record["steps"]) < max_layers)
    assert [(s["layer"], s["kept"]) for s in record["steps"]] == [(k, k in kept) for k in list(costs)[:len(record["steps"])]]
    # The IR written is the chosen try: exactly the kept layers read float weights, every other is int8.
    assert _float_layers(ov.Core().read_model(str(out.artifact)), mapping) == set(kept)
    manifest = read_manifest(out.artifact)
    assert manifest.extra["quantization"]["fallback"] == record
    assert manifest.extra["quantization"]["kept_in_float_ops"] == [op for layer in kept for op in mapping[layer]]
    assert "fallback=auto" in manifest.steps[0]
    assert any("Kept in float: " + ", ".join(kept) in n for n in out.notes)
    if smoothquant == "auto":  # q/k/v and ffn.0 of both blocks read a LayerNorm
        assert manifest.extra["quantization"]["smoothing"] == {"by": "torchslim", "alpha": "auto", "layers": 8}
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the caller's model untouched
    # Every Linear/Conv of the model is one MatMul/Convolution of the converted graph.
    layers = [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    assert list(mapping) == layers and all(len(ops) == 1 for ops in mapping.values())


def test_torch_layers_are_found_by_the_converters_op_names():
    path = ov_quant.module_path
    assert path("__module.encoder.layer.0.attention.self.query/aten::linear/MatMul") == \
        "encoder.layer.0.attention.self.query"
    assert path("__module/aten::linear/MatMul") == "" and path("Multiply_4710") is None
    assert path("aten::add/Add") is None


def test_a_tiny_bert_maps_every_linear_and_takes_nncf_smoothquant(tmp_path):
    """Token inputs: ModelType.TRANSFORMER, where NNCF runs its own SmoothQuant; an alpha is
    passed on to it and recorded with the smoothing multiplies it inserted."""
    import openvino as ov

    transformers = pytest.importorskip("transformers")
    from tests.hf.test_hf import _token_bundle
    from torchslim.hf._wrap import SentenceEmbedder

    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                     intermediate_size=64, max_position_embeddings=64, attn_implementation="eager")
    model, bundle = SentenceEmbedder(transformers.BertModel(config)).eval(), _token_bundle()
    path = export(model, tmp_path, bundle.example_inputs(2),
                  {"format": "openvino", "quantize": "int8", "smoothquant": 0.5}, data=bundle,
                  info=ArtifactInfo(task="embedding", input_names=["input_ids", "attention_mask"]))
    quantization = read_manifest(path).extra["quantization"]
    assert quantization["model_type"] == "TRANSFORMER" and quantization["smoothquant"] == 0.5
    assert quantization["smoothing"]["by"] == "nncf" and quantization["smoothing"]["alpha"] == 0.5
    assert quantization["smoothing"]["smoothed_inputs"] > 0
    # The written IR keeps the converter's op names: every Linear is found (the pooler, unused by
    # the sentence embedding, was dropped by the converter), and all of them are int8.
    ir = ov.Core().read_model(str(path))
    mapping = ov_quant.layer_ops(ir, model)
    assert list(mapping) == [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and "pooler" not in n]
    assert mapping["encoder.encoder.layer.0.attention.self.query"] == \
        ["__module.encoder.encoder.layer.0.attention.self.query/aten::linear/MatMul"]
    assert _float_layers(ir, mapping) == set()


def test_smoothquant_maps_onto_nncfs_parameters():
    import nncf

    def smoothing(value, transformer):
        advanced, record = ov_quant._smoothing(value, transformer, 3, lambda _m: None)
        alphas = None if advanced is None else advanced.smooth_quant_alphas
        return (None if alphas is None else (alphas.matmul, alphas.convolution)), record

    default = nncf.AdvancedSmoothQuantParameters().matmul  # 0.95 in nncf 3.4
    assert smoothing(None, True) == (None, {"by": "nncf", "alpha": default})  # NNCF's default, untouched
    assert smoothing(0.5, True) == ((0.5, -1), {"by": "nncf", "alpha": 0.5})
    assert smoothing("auto", True) == ((-1, -1), {"by": "torchslim", "alpha": "auto", "layers": 3})
    assert smoothing(None, False) == (None, {"by": None, "alpha": None})
    advanced, record = smoothing(0.5, False)  # NNCF smooths only ModelType.TRANSFORMER: said, not hidden
    assert advanced is None and record["by"] is None and "ModelType.TRANSFORMER" in record["note"]


def test_step_and_export_accept_the_options_for_openvino_int8_only(tmp_path):
    config = validate_step({"format": "openvino", "quantize": "int8", "smoothquant": "auto", "fallback": "auto",
                            "fallback_target_drop": 0.2})
    assert config.quantize == "static" and config.describe() == \
        "export(format=openvino, quantize=static, precision=int8, smoothquant=auto, fallback=auto, fallback_target_drop=0.2)"
    assert validate_step({"format": "openvino", "quantize": "static", "fallback": "auto"}).fallback == "auto"
    for options in ({"format": "openvino", "fallback": "auto"}, {"format": "openvino", "precision": "bf16",
                                                                 "smoothquant": 0.5}):
        with pytest.raises(ConfigError, match="OpenVINO's NNCF int8 \\(format openvino, quantize int8\\)"):
            validate_step(options)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    with pytest.raises(ConfigError, match="validation split"):  # fallback measures on a DataBundle's val
        export(model, tmp_path, (torch.randn(2, 1, 8, 8),),
               {"format": "openvino", "quantize": "int8", "fallback": "auto"}, data=[(torch.randn(4, 1, 8, 8),)])
    with pytest.raises(ConfigError, match="smoothquant and fallback"):
        export(model, tmp_path, (torch.randn(2, 1, 8, 8),), {"format": "openvino", "fallback": "auto"})
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("argv, words", [
    (["--format", "openvino", "--fallback", "auto"], "OpenVINO's NNCF int8"),
    (["--format", "onnx", "--quantize", "dynamic", "--smoothquant", "0.5"], "ONNX Runtime static"),
    (["--format", "pt2", "--fallback", "auto"], "smoothquant and fallback"),
    (["--format", "openvino", "--quantize", "int8", "--smoothquant", "strong"], "--smoothquant 'strong'"),
    (["--format", "onnx", "--quantize", "static", "--smoothquant", "1.5"], "alpha in [0, 1]"),
    (["--format", "openvino", "--quantize", "int8", "--fallback", "always"], "--fallback 'always'"),
    (["--format", "onnx", "--quantize", "static", "--fallback", "auto", "--fallback-max-layers", "0"],
     "fallback_max_layers"),
])
def test_cli_tuning_options_bad_input_exits_2(argv, words, tmp_path, capsys):
    assert run(["export", "--out", str(tmp_path / "x"), *argv]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert words in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_fallback_for_real_on_resnet_mini(tmp_path):
    """The real metric: accuracy through the compiled int8 tries; a 0-point target makes it try."""
    model, bundle = trained("resnet-mini")
    config = validate_step({"format": "openvino", "quantize": "int8", "calibration_batches": 2, "fallback": "auto",
                            "fallback_target_drop": 0.0, "fallback_max_layers": 2})
    out = run_step(model, config, _context(bundle, model, tmp_path))
    check_real_fallback(out, model, bundle, (nn.Linear, nn.Conv2d))
