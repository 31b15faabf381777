"""What an int8 ONNX file of a transformer block really stores (issue 22's ViT).

Every weight a MatMul/Gemm/Conv reads must be int8 — MultiheadAttention's fused
``in_proj_weight`` and its ``out_proj`` (which it reads itself) included, and the patch
convolution — so that the only float tensors left of any size are the ones no int8 kernel takes
(the class token and positional parameters). And the file must not carry the dynamo exporter's
debugging metadata: on the 69k-parameter ViT of examples/vit_blocks.py it was 72 KB of a
180 KB int8 file, more than the weights: 2.2x smaller than the eager .pt2 instead of 3.5x.
Tiny widths (tests/fixtures/blocks.py): each export takes about a second.
"""

from __future__ import annotations

import math

import onnx
import pytest

from tests.block_contract import tiny_digits
from tests.fixtures.blocks import build
from torchslim.export import export

_FLOAT = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16)
_INT8 = (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)
_WEIGHT_OPS = {"MatMul", "Gemm", "Conv", "MatMulInteger", "ConvInteger"}


@pytest.fixture(scope="module")
def bundle():
    return tiny_digits()


def _weight_inputs(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    """Weight-reading node -> the initializer its weight comes from (through a
    DequantizeLinear in a QDQ graph, Cast and Mul with weight-only); only nodes whose weight is a
    stored constant."""
    inits = {i.name: i for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    found = {}
    for node in graph.node:
        if node.op_type not in _WEIGHT_OPS or len(node.input) < 2:
            continue
        name = node.input[1]
        source = producer.get(name)
        if source is not None and source.op_type == "DequantizeLinear":
            name = source.input[0]
        elif source is not None and source.op_type == "Mul":  # weight-only: Cast(int8) x scale
            cast = producer.get(source.input[0])
            name = cast.input[0] if cast is not None and cast.op_type == "Cast" else name
        if name in inits:
            found[node.name] = inits[name]
    return found


# vit-class-token: patch conv + class token + position parameter + pre-norm nn.TransformerEncoder;
# mha-seq-first-weights: nn.MultiheadAttention sequence first, returning its attention weights.
@pytest.mark.parametrize(("block", "method"), [
    ("vit-class-token", "dynamic"),
    ("mha-seq-first-weights", "dynamic"),
    pytest.param("vit-class-token", "static", marks=pytest.mark.slow),  # calibration: seconds
    ("vit-class-token", "weight-only"),
    ("mha-seq-first-weights", "weight-only"),
])
def test_every_projection_weight_is_int8(block, method, bundle, tmp_path):
    model = build(block)
    config = {"format": "onnx", "quantize": method}
    if method == "static":
        config["calibration_batches"] = 2
    path = export(model, tmp_path, bundle.example_inputs(4), config,
                  data=bundle if method == "static" else None)
    graph = onnx.load(str(path)).graph
    # Of the exporter's node metadata only the module path is kept (what the static fallback and
    # a graph viewer read): no stack traces, FX nodes or class hierarchies.
    assert {p.key for n in graph.node for p in n.metadata_props} <= {"pkg.torch.onnx.name_scopes"}
    weights = _weight_inputs(graph)
    linears = sum(1 for m in model.modules() if type(m).__name__ in ("Linear", "NonDynamicallyQuantizableLinear"))
    attention = sum(1 for m in model.modules() if type(m).__name__ == "MultiheadAttention")
    # in_proj (q, k, v as one weight) + out_proj per attention, every other Linear, the patch conv
    assert len(weights) >= linears + attention
    still_float = sorted(n for n, init in weights.items() if init.data_type not in _INT8)
    assert not still_float, f"weights left in float: {still_float}"
    # Nothing of size stays float but what no int8 kernel reads (class token, positions).
    large_float = sorted(i.name for i in graph.initializer
                         if i.data_type in _FLOAT and len(i.dims) >= 2 and math.prod(i.dims) > 64)
    assert all(n.split(".")[-1] in ("cls", "pos", "query") for n in large_float), large_float

