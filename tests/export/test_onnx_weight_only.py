"""Weight-only int8 ONNX (``{format: onnx, quantize: weight-only}``): the file stores int8
weights, and ONNX Runtime folds them back to float when it loads it, so the session runs the
fp32 graph (the point of the variant: fp32 speed at about a quarter of the size). Speed is a
benchmark's business (docs/optimize.md); here the graph ORT runs is checked instead.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn as nn
from onnx import helper, numpy_helper

from tests.block_contract import tiny_digits
from tests.fixtures.blocks import build
from torchslim.artifacts import load, read_manifest
from torchslim.errors import ConfigError, ExportError
from torchslim.export import OnnxWeightOnlyInt8Config, export, parse_export_config
from torchslim.export._onnx_weights import store_int8_weights

_INT8 = (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)


@pytest.fixture(scope="module")
def bundle():
    return tiny_digits()


def _session_graph(path, tmp_path, level=ort.GraphOptimizationLevel.ORT_ENABLE_BASIC) -> onnx.GraphProto:
    """The graph an ONNX Runtime session runs, as it saves it after its optimizations."""
    options = ort.SessionOptions()
    options.graph_optimization_level = level
    options.optimized_model_filepath = str(tmp_path / "session.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return onnx.load(str(tmp_path / "session.onnx")).graph


@pytest.mark.parametrize("block", ["vit-class-token", "mobilenet-block", "gru", "tied-weights"])
def test_weights_are_int8_on_disk_and_float_in_the_session(block, bundle, tmp_path):
    model = build(block).eval()
    inputs = bundle.example_inputs(4)
    path = export(model, tmp_path / "wo", inputs, {"format": "onnx", "quantize": "weight-only"})
    graph = onnx.load(str(path)).graph
    int8 = [i for i in graph.initializer if i.data_type in _INT8]
    info = read_manifest(path).extra["quantization"]
    assert info["int8_weight_tensors"] == len(int8) > 0
    assert info["int8_values"] == sum(math.prod(i.dims) for i in int8)
    # Everything a Conv/Gemm/MatMul reads of size is int8 on disk, none of it float.
    floats = [i for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT and len(i.dims) >= 2]
    assert all(i.name in info["kept_float"] for i in floats)
    # The session folded every Cast and Mul of the weights: no int8 tensor is left in what it runs.
    session = _session_graph(path, tmp_path)
    assert not [i.name for i in session.initializer if i.data_type in _INT8]
    assert not [n.name for n in session.node if n.op_type == "Cast" and n.input[0].endswith(".int8")]
    # Outputs close to the model's (per-channel int8 weights).
    expected = model(*inputs).detach().flatten(1)
    got = torch.as_tensor(load(path)(*inputs)).flatten(1)
    assert torch.nn.functional.cosine_similarity(got, expected).min() > 0.99


def test_weight_only_of_a_real_cnn_is_much_smaller_than_fp32(tmp_path):
    from examples.dscnn_se import factory  # 59k parameters: the size the default recipe meets

    model = factory().eval()
    inputs = (torch.rand(2, 1, 8, 8),)
    fp32 = export(model, tmp_path / "fp32", inputs, "onnx")
    int8 = export(model, tmp_path / "wo", inputs, OnnxWeightOnlyInt8Config())
    assert int8.stat().st_size < 0.45 * fp32.stat().st_size
    assert read_manifest(int8).extra["quantize"] == "weight-only"


def test_a_model_without_weights_is_refused_with_the_way_out(bundle, tmp_path):
    class Crop(nn.Module):
        def forward(self, x):
            return x.flatten(1)[:, :10] * 2.0

    with pytest.raises(ExportError, match="export without quantize"):
        export(Crop(), tmp_path / "wo", bundle.example_inputs(2), {"format": "onnx", "quantize": "weight-only"})


def test_only_finite_weights_in_weight_slots_become_int8(tmp_path):
    """A MatMul constant holding -inf (a mask) and a tensor Add reads stay float, untouched."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 8)).astype(np.float32)
    masked = w.copy()
    masked[0, 0] = -np.inf
    offset = rng.standard_normal((1, 8)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["a"]), helper.make_node("MatMul", ["a", "masked"], ["b"]),
         helper.make_node("Add", ["b", "offset"], ["y"])],
        "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [None, 8])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [None, 8])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(masked, "masked"),
         numpy_helper.from_array(offset, "offset")])
    source = tmp_path / "g.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(source))
    info = store_int8_weights(source, tmp_path / "wo.onnx")
    stored = {i.name: i for i in onnx.load(str(tmp_path / "wo.onnx")).graph.initializer}
    assert info["int8_weight_tensors"] == 1 and stored["w.int8"].data_type == onnx.TensorProto.INT8
    assert info["kept_float"] == ["masked", "offset"]  # every float tensor of 2+ dims not stored int8
    assert np.array_equal(numpy_helper.to_array(stored["masked"]), masked)
    assert np.array_equal(numpy_helper.to_array(stored["offset"]), offset)
    # per output column of the MatMul: q * scale is within half a step of w
    scale = numpy_helper.to_array(stored["w.scale"])
    assert scale.shape == (8,)
    restored = numpy_helper.to_array(stored["w.int8"]).astype(np.float32) * scale[None, :]
    assert np.abs(restored - w).max() <= scale.max() / 2 + 1e-6


def test_the_config_takes_no_calibration():
    assert isinstance(parse_export_config({"format": "onnx", "quantize": "weight-only"}), OnnxWeightOnlyInt8Config)
    assert parse_export_config({"format": "onnx", "quantize": "weight-only"}).precision == "int8"
    with pytest.raises(ConfigError, match="calibration_batches"):
        parse_export_config({"format": "onnx", "quantize": "weight-only", "calibration_batches": 4})
