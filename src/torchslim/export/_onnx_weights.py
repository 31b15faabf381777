"""Weight-only int8 for an ONNX file: smaller on disk, the fp32 kernels at run time.

Every weight a layer reads (a Conv's or Gemm's weight, a MatMul's constant operand, an
embedding table under Gather, MultiheadAttention's fused ``in_proj_weight`` under Split, a
GRU/LSTM's input and recurrent weights) is stored as int8 with one float scale per output
channel, symmetric (``max|w| / 127``). Cast and Mul nodes whose inputs are all constants turn
it back into float; every runtime folds them when it loads the file (ONNX Runtime's constant
folding, on at its basic level and above), so the session holds fp32 weights and runs fp32
kernels: the file is about 4x smaller and the model as fast as the fp32 file. That is the
variant for models where int8 arithmetic does not pay (depthwise CNNs and small layers at
batch 1, where quantizing activations costs more than it saves).

Not ``DequantizeLinear``: ONNX Runtime keeps a DequantizeLinear of a constant in the graph for
its QDQ fusions and dequantizes the weights on every call (2.5x slower than fp32 at batch 1 on
examples/dscnn_se.py: 0.140 vs 0.056 ms, measured 2026-12-05). Biases, norms, class tokens and positional
parameters (read by Add, Expand, Mul) stay float: they are small, and int8 would cost accuracy
for no size.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from torchslim.errors import ExportError

# op type -> {input index: the axis of its output channels}; -1: the last axis.
_WEIGHT_SLOTS: dict[str, dict[int, int]] = {
    "Conv": {1: 0},
    "ConvTranspose": {1: 1},
    "Gemm": {1: 0},  # transB=0 reads [K, N]: see _axis
    "MatMul": {1: -1},
    "Gather": {0: 0},
    "Split": {0: 0},
    "GRU": {1: 1, 2: 1},
    "LSTM": {1: 1, 2: 1},
    "RNN": {1: 1, 2: 1},
}
MIN_VALUES = 16  # smaller tensors cost more in scales and nodes than int8 saves


def store_int8_weights(source: Path, target: Path, log: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """Write ``source`` to ``target`` with its weights stored as per-channel int8; returns
    what the manifest records. Raises ``ExportError`` when the model has no such weight."""
    model = onnx.load(str(source), load_external_data=True)
    graph = model.graph
    axes = _weight_axes(graph)
    kept, nodes, initializers = [], [], []
    shapes: dict[tuple[int, int], str] = {}
    stored: set[str] = set()  # the weights now stored as int8
    values = 0
    for init in graph.initializer:
        array = numpy_helper.to_array(init) if init.data_type == onnx.TensorProto.FLOAT else None
        axis = axes.get(init.name)
        if array is None or array.ndim < 2:
            initializers.append(init)
            continue
        if axis is None or array.size < MIN_VALUES or not np.isfinite(array).all():
            kept.append(init.name)
            initializers.append(init)
            continue
        axis %= array.ndim
        q, scale = _int8(array, axis)
        shape_name = shapes.setdefault((array.ndim, axis), f"int8_weights.shape_{array.ndim}d_axis{axis}")
        initializers += [numpy_helper.from_array(q, f"{init.name}.int8"),
                         numpy_helper.from_array(scale, f"{init.name}.scale")]
        nodes += [
            helper.make_node("Cast", [f"{init.name}.int8"], [f"{init.name}.float"], to=onnx.TensorProto.FLOAT,
                             name=f"{init.name}.cast"),
            helper.make_node("Reshape", [f"{init.name}.scale", shape_name], [f"{init.name}.scale_shaped"],
                             name=f"{init.name}.scale_reshape"),
            helper.make_node("Mul", [f"{init.name}.float", f"{init.name}.scale_shaped"], [init.name],
                             name=f"{init.name}.dequantize"),
        ]
        stored.add(init.name)
        values += array.size
    if not stored:
        raise ExportError("no weight of this model is read by a Conv, Gemm, MatMul, Gather or recurrent layer "
                          f"with at least {MIN_VALUES} values, so int8 weights would change nothing; export "
                          "without quantize.")
    for (ndim, axis), name in shapes.items():
        initializers.append(numpy_helper.from_array(
            np.array([-1 if d == axis else 1 for d in range(ndim)], dtype=np.int64), name))
    inputs = [v for v in graph.input if v.name not in stored]  # IR < 4 lists initializers as inputs
    del graph.input[:]
    graph.input.extend(inputs)
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    original = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + original)
    onnx.checker.check_model(model)
    onnx.save_model(model, str(target), save_as_external_data=False)
    log(f"int8 weights: {len(stored)} tensors ({values:,} values) stored per-channel int8, "
        f"{len(kept)} kept in float; the runtime folds them back to float when it loads the file")
    return {"method": "weight-only", "int8_weight_tensors": len(stored), "int8_values": int(values),
            "per_channel": True, "symmetric": True, "kept_float": kept,
            "compute": "float (int8 weights folded back to float when the session loads)"}


def _weight_axes(graph: onnx.GraphProto) -> dict[str, int]:
    """Initializer -> the axis of its output channels, for those read only in weight slots."""
    initializers = {i.name for i in graph.initializer}
    axes: dict[str, int] = {}
    elsewhere: set[str] = set()
    for node in graph.node:
        slots = _WEIGHT_SLOTS.get(node.op_type, {})
        for index, name in enumerate(node.input):
            if name not in initializers:
                continue
            if index in slots:
                axes.setdefault(name, _axis(node, slots[index]))
            else:
                elsewhere.add(name)
    for output in graph.output:  # a weight the graph also returns stays as it is
        elsewhere.add(output.name)
    return {name: axis for name, axis in axes.items() if name not in elsewhere}


def _axis(node: onnx.NodeProto, default: int) -> int:
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else -1
    return default


def _int8(array: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-channel int8 along ``axis``: (int8 values, one float32 scale per channel)."""
    others = tuple(d for d in range(array.ndim) if d != axis)
    peak = np.abs(array).max(axis=others)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    shape = [-1 if d == axis else 1 for d in range(array.ndim)]
    q = np.clip(np.rint(array / scale.reshape(shape)), -127, 127).astype(np.int8)
    return q, scale
