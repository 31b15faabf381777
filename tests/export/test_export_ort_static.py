"""ONNX Runtime static int8 for transformers (torchslim.export._ort_static): per-sentence
calibration, operator choice, SmoothQuant before the export, and accuracy-aware fallback
through ORT sessions (``export: {format: onnx, quantize: static, fallback: auto}``)."""

from __future__ import annotations

import onnx
import pytest
import torch
import torch.nn as nn

from tests._quant_fixtures import check_real_fallback, trained
from torchslim.artifacts import read_manifest
from torchslim.errors import ConfigError
from torchslim.export import ArtifactInfo, export, run_step, validate_step
from torchslim.export import _ort_static as ort_static
from torchslim.export._common import calibration_samples

_WEIGHT_OPS = {"MatMul", "Gemm", "Conv"}


def _context(bundle, model, tmp_path, budget=None):
    from torchslim.core.step import StepContext

    return StepContext(data=bundle, device=torch.device("cpu"), teacher=model, work_dir=tmp_path,
                       example_inputs=bundle.example_inputs(2, split="train"), log=lambda _m: None,
                       max_accuracy_drop=budget)


def _float_layers(path, mapping: dict[str, list[str]]) -> set[str]:
    """The layers whose weight-carrying nodes read a float weight (not a DequantizeLinear) in the
    quantized graph at ``path``: what ORT really left in float."""
    graph = onnx.load(str(path), load_external_data=False)
    dequantized = {o for n in graph.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    by_name = {n.name: n for n in graph.graph.node}
    return {layer for layer, nodes in mapping.items()
            if any(by_name[n].op_type in _WEIGHT_OPS and by_name[n].input[1] not in dequantized
                   for n in nodes if n in by_name)}


def _fake_fallback(monkeypatch, costs: dict[str, float]) -> dict:
    """A fake metric (1 - the summed cost in points of the layers still int8 in the ORT graph)
    and a fake ranking (the costs' order); returns the layer -> nodes mapping the export used."""
    from torchslim.quantize import _fallback as fallback
    from torchslim.runtime.onnxrt import OnnxModel

    seen: dict = {}
    real_layer_nodes = ort_static.layer_nodes

    def spy(graph, model):
        seen.update(real_layer_nodes(graph, model))
        return dict(seen)

    def metric(_reference, _data, _device):
        def score(fn):
            if not isinstance(fn, OnnxModel):
                return 1.0  # the float torch model
            in_float = _float_layers(fn.path, seen)
            return 1.0 - sum(c for layer, c in costs.items() if layer not in in_float) / 100
        return score

    def ranking(_model, layers, _score, _reference):  # the costs' order, then the rest
        return [(name, costs[name]) for name in costs if name in layers] + [(n, 0.0) for n in layers if n not in costs]

    monkeypatch.setattr(ort_static, "layer_nodes", spy)
    monkeypatch.setattr(fallback, "metric_fn", metric)
    monkeypatch.setattr(fallback, "rank_layers", ranking)
    return seen


@pytest.mark.parametrize("name, costs, kept, budget", [
    # 1.4 points all-int8 -> ffn.0 in float: 0.6 -> q: no gain, back to int8 -> head: 0.2, within the
    # target: 0.4, the recipe's budget, which caps the default 0.5.
    ("tiny-transformer", {"layers.0.ffn.0": 0.8, "layers.1.attn.q": 0.0, "head": 0.4, "layers.1.ffn.2": 0.2},
     ["layers.0.ffn.0", "head"], 0.4),
    ("resnet-mini", {"stem.0": 0.9, "stages.1.0.shortcut.0": 0.6, "fc": 0.3}, ["stem.0", "stages.1.0.shortcut.0"],
     1.0),
])
def test_fallback_keeps_the_costly_layers_in_float_in_the_ort_graph(name, costs, kept, budget, monkeypatch, tmp_path):
    model, bundle = trained(name)
    costs = {layer: c for layer, c in costs.items() if layer in dict(model.named_modules())}
    assert costs, "the costs name layers of the zoo model"
    mapping = _fake_fallback(monkeypatch, costs)
    config = validate_step({"format": "onnx", "quantize": "static", "calibration_batches": 2, "fallback": "auto",
                            "fallback_max_layers": 3})
    out = run_step(model, config, _context(bundle, model, tmp_path, budget=budget))
    record = out.facts["fallback"].to_dict()  # the typed FallbackResult, as report.json holds it
    assert record["target_drop"] == min(budget, 0.5)
    assert record["kept_in_float"] == [k for k in kept if k in costs]
    assert record["within_target"] and record["quantized"] == pytest.approx(1 - sum(costs.values()) / 100)
    assert [s["layer"] for s in record["steps"]] == list(costs)[:len(record["steps"])]
    assert [s["kept"] for s in record["steps"]] == [layer in kept for layer in list(costs)[:len(record["steps"])]]
    # The artifact written is the chosen try: exactly those layers read float weights.
    assert _float_layers(out.artifact, mapping) == set(record["kept_in_float"])
    manifest = read_manifest(out.artifact)
    assert manifest.extra["quantization"]["fallback"] == record
    assert manifest.extra["quantization"]["operators"] == ("weights" if name == "tiny-transformer" else "all")
    assert "fallback=auto" in manifest.steps[0]
    assert any("Kept in float: " + ", ".join(record["kept_in_float"]) in n for n in out.notes)
    # Every Linear/Conv of the model maps to its one weight-carrying ONNX node.
    kinds = (nn.Linear, nn.Conv2d)
    layers = [n for n, m in model.named_modules() if isinstance(m, kinds)]
    assert sorted(mapping) == sorted(layers)


@pytest.mark.slow  # 10 s; the static export of a tiny BERT (no fallback) is in test_export_ort_fusion.py
def test_a_token_model_is_calibrated_per_sentence_and_falls_back_on_fidelity(monkeypatch, tmp_path):
    """A tiny BERT on embedding data: the fallback steers by fidelity, and the recipe's budget
    (0.2 points) caps its target (0.5 by default)."""
    transformers = pytest.importorskip("transformers")
    from tests.hf.test_hf import _token_bundle
    from torchslim.hf._wrap import SentenceEmbedder

    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                     intermediate_size=64, max_position_embeddings=64, attn_implementation="eager")
    model, bundle = SentenceEmbedder(transformers.BertModel(config)).eval(), _token_bundle()
    _fake_fallback(monkeypatch, {"encoder.encoder.layer.0.intermediate.dense": 0.3})
    config = validate_step({"format": "onnx", "quantize": "static", "fallback": "auto"})
    ctx = _context(bundle, model, tmp_path, budget=0.2)
    ctx.input_names = ["input_ids", "attention_mask"]
    out = run_step(model, config, ctx)
    record = out.facts["fallback"].to_dict()  # the typed FallbackResult, as report.json holds it
    assert record["metric"] == "fidelity" and record["target_drop"] == 0.2  # 0.3 points > 0.2: it tried
    assert record["kept_in_float"] == ["encoder.encoder.layer.0.intermediate.dense"]
    quantization = read_manifest(out.artifact).extra["quantization"]
    # 16 train sentences, one batch: each calibrated alone at its own length.
    assert quantization["calibration_samples"] == len(bundle.train) and quantization["calibration_batches"] == 1
    assert quantization["operators"] == "weights"  # a transformer graph: its Linear layers only


def test_token_models_calibrate_one_sentence_at_its_own_length():
    ids = torch.tensor([[101, 7, 8, 102, 0, 0], [101, 9, 102, 0, 0, 0]])
    mask = (ids != 0).long()
    samples = calibration_samples([(ids, mask)], ["input_ids", "attention_mask"])
    assert [s[0].shape for s in samples] == [(1, 4), (1, 3)] and all(int(s[1].min()) == 1 for s in samples)


def test_operator_choice_reads_the_graph():
    from onnx import helper

    def graph(*ops):
        nodes = [helper.make_node(op, ["x", "w"] if op == "MatMul" else ["x"], [f"y{i}"], name=f"n{i}")
                 for i, op in enumerate(ops)]
        weight = helper.make_tensor("w", onnx.TensorProto.FLOAT, [1, 1], [1.0])
        return helper.make_model(helper.make_graph(nodes, "g", [], [], initializer=[weight]))

    assert ort_static.operator_choice(graph("Conv", "Relu"), "auto") == ("all", None, None)
    choice, types, nodes = ort_static.operator_choice(graph("MatMul", "Softmax"), "auto")
    assert choice == "weights" and "MatMul" in types and nodes == ["n0"]  # MatMul by a constant weight only
    assert ort_static.operator_choice(graph("MatMul", "Softmax"), "matmul")[2] is None


def test_options_are_validated(tmp_path):
    with pytest.raises(ConfigError, match="fallback"):
        validate_step({"format": "onnx", "quantize": "dynamic", "fallback": "auto"})
    with pytest.raises(ConfigError, match="smoothquant"):
        validate_step({"format": "pt2", "smoothquant": 0.5})
    with pytest.raises(ConfigError, match="smoothquant"):
        validate_step({"format": "onnx", "quantize": "static", "smoothquant": 2})
    assert validate_step({"format": "onnx", "quantize": "static", "smoothquant": "auto", "fallback": "auto"}).describe() \
        == "export(format=onnx, quantize=static, precision=int8, smoothquant=auto, fallback=auto)"
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    with pytest.raises(ConfigError, match="validation split"):  # fallback measures on a DataBundle's val
        export(model, tmp_path, (torch.randn(2, 1, 8, 8),), {"quantize": "static", "fallback": "auto"},
               data=[(torch.randn(4, 1, 8, 8),)])
    with pytest.raises(ConfigError, match="ONNX Runtime static"):
        export(model, tmp_path, (torch.randn(2, 1, 8, 8),), {"quantize": "dynamic", "smoothquant": 0.5})


@pytest.mark.slow
def test_fallback_for_real_on_tiny_transformer(tmp_path):
    model, bundle = trained("tiny-transformer")
    # Target 0 points: any measured drop makes it try layers in float (at most 2).
    config = validate_step({"format": "onnx", "quantize": "static", "fallback": "auto", "smoothquant": "auto",
                            "fallback_target_drop": 0.0, "fallback_max_layers": 2})
    out = run_step(model, config, _context(bundle, model, tmp_path))
    check_real_fallback(out, model, bundle, (nn.Linear,))
    assert read_manifest(out.artifact).extra["quantization"]["smoothquant"] == "auto"


def test_a_token_model_puts_only_its_linear_inputs_through_int8(tmp_path):
    """As PT2E: the Linear inputs are the only int8 activations. ORT alone also quantized each
    MatMul's output and handed the int8 LayerNorm output to the residual Add (MiniLM: 0.931
    fidelity instead of 0.993)."""
    pytest.importorskip("transformers")
    from tests.hf.test_varlen import batch, tiny_bert

    model, names = tiny_bert(), ["input_ids", "attention_mask"]
    calibration = [batch(4, 12, seed=1), batch(4, 9, seed=2)]
    out = export(model, tmp_path / "m.onnx", batch(2, 12), {"quantize": "static"}, data=calibration,
                 info=ArtifactInfo(input_names=names))
    quantization = read_manifest(out).extra["quantization"]
    assert quantization["operators"] == "weights" and quantization["int8_activations"] == "Linear inputs only"
    assert quantization["calibration_method"] == "minmax"
    graph = onnx.load(str(out), load_external_data=False)
    producer = {o: n for n in graph.graph.node for o in n.output}
    activations = {n.output[0] for n in graph.graph.node if n.op_type == "DequantizeLinear"
                   and n.input[0] in producer and producer[n.input[0]].op_type == "QuantizeLinear"}
    readers = [n for n in graph.graph.node if any(i in activations for i in n.input)]
    assert {n.op_type for n in readers} == {"MatMul"}  # the residual Add reads the float LayerNorm output
    assert len(readers) == sum(isinstance(m, nn.Linear) for m in model.modules())  # and every Linear is int8
    assert not any(producer[n.input[0]].op_type == "MatMul" for n in graph.graph.node
                   if n.op_type == "QuantizeLinear" and n.input[0] in producer)  # Linear outputs stay float
