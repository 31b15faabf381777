"""ONNX Runtime static int8 (QDQ) that survives transformers, with accuracy-aware fallback.

Plain ``quantize_static`` over 16 padded batches gave all-MiniLM-L6-v2 a mean cosine of 0.34
to PyTorch. What is done instead, each part measured (docs/transformers.md):

- Calibration of token models one sentence at a time at its own length
  (``common.calibration_samples``): the pad positions of a padded batch are activations no
  served sentence has, and a MinMax range stretched by them wastes the int8 levels.
- Which operators: ``operators="auto"`` quantizes only the weight-carrying MatMul/Gemm/Conv
  nodes (the Linear layers) of a transformer graph (one with LayerNormalization or Softmax);
  every op ORT supports for anything else (the zoo CNNs keep their QLinear adds and pools).
- Only the Linear inputs in int8 (named nodes): ORT also quantized each MatMul's output and
  handed the int8 copy of a LayerNorm output to the residual Add; undoing both
  (``_ort_quant._static``) took MiniLM from 0.931 to 0.993, where PT2E is. Better ranges
  alone did not (Percentile, Entropy, Distribution, a torch-side HistogramObserver: 0.78-0.95).
- SmoothQuant (``smoothquant``): ``torchslim.quantize._smooth`` on a copy of the torch model
  before the export, so the ONNX graph carries the rescaled weights.
- Fallback (``fallback="auto"``): quantize everything, measure the metric on the validation
  split through an ORT session, and while it is outside ``fallback_target_drop`` keep the
  Linear layers that cost the most (ranked on the torch model by ``rank_layers``) in float
  via ORT's ``nodes_to_exclude``, one at a time (``torchslim.quantize._fallback``). ONNX
  nodes are matched to torch layers by the module path the dynamo exporter records on every
  node (metadata ``pkg.torch.onnx.name_scopes``).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn as nn

from torchslim.export._common import weight_layers
from torchslim.quantize import Int8Tuning

if TYPE_CHECKING:  # onnx is imported where a graph is read: importing torchslim.export stays light
    import onnx

SCOPES = "pkg.torch.onnx.name_scopes"
_WEIGHT_OPS = ("MatMul", "Gemm", "Conv")
_TRANSFORMER_OPS = {"LayerNormalization", "Softmax"}
# Which nodes static int8 quantizes: "auto" (see the module docstring), "all" ORT supports,
# "weights" (weight-carrying MatMul/Gemm/Conv, Linear inputs only), "matmul" (those op types).
Operators = Literal["auto", "all", "weights", "matmul"]


def layer_nodes(graph: onnx.ModelProto, model: nn.Module) -> dict[str, list[str]]:
    """Linear/Conv layer name of ``model`` -> the ONNX nodes exported from it (by their
    recorded module path). The exporter folds an eval-mode BatchNorm into the Conv before it
    and the fused Conv carries the BatchNorm's path: it is given back to that Conv."""
    ordered, folded = weight_layers(model)
    layers = set(ordered)
    found: dict[str, list[str]] = {name: [] for name in ordered}
    for node in graph.graph.node:
        scopes = next((p.value for p in node.metadata_props if p.key == SCOPES), None)
        owners = [s for s in _scope_list(scopes or "[]") if s in layers or s in folded]
        if not owners:
            continue
        owner = owners[-1]  # the innermost layer owns it
        if owner in folded:
            if node.op_type not in _WEIGHT_OPS:
                continue  # the BatchNorm's own ops, if it was not folded
            owner = folded[owner]
        found[owner].append(node.name)
    return {name: nodes for name, nodes in found.items() if nodes}


def _scope_list(value: str) -> list[str]:
    import ast

    try:
        scopes = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return []
    return [str(s) for s in scopes] if isinstance(scopes, list) else []


def operator_choice(graph: onnx.ModelProto, operators: str) -> tuple[str, list[str] | None, list[str] | None]:
    """(the choice made, op types to quantize, nodes to quantize) for ``quantize_static``."""
    if operators == "auto":
        operators = "weights" if any(n.op_type in _TRANSFORMER_OPS for n in graph.graph.node) else "all"
    if operators == "all":
        return operators, None, None
    if operators == "matmul":
        return operators, list(_WEIGHT_OPS), None
    constants = {i.name for i in graph.graph.initializer}
    constants |= {o for n in graph.graph.node if n.op_type == "Constant" for o in n.output}
    nodes = [n.name for n in graph.graph.node if n.op_type in _WEIGHT_OPS and len(n.input) > 1 and n.input[1] in constants]
    return operators, list(_WEIGHT_OPS), nodes


def quantize_static_onnx(fp32: Path, target: Path, *, samples: list[tuple[torch.Tensor, ...]], tuning: Int8Tuning,
                         operators: Operators = "auto", fallback_inputs: tuple[nn.Module, nn.Module, Any] | None = None,
                         log: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """Static int8 of the exported ``fp32`` file into ``target``; returns the manifest's
    ``quantization`` entry (with ``fallback``, the record, when it ran). ``fallback_inputs`` is
    (the float model as given, the model that was exported, the DataBundle) for the fallback."""
    import onnx

    from torchslim.export._ort_quant import prepared_workdir, quantize_prepared

    graph = onnx.load(str(fp32), load_external_data=False)
    choice, op_types, include = operator_choice(graph, operators)
    with prepared_workdir(fp32, log) as (prepared, preprocessing):
        ranges = prepared.parent / "ranges.json"  # calibrated once, reused by every fallback try

        def quantize(kept: tuple[str, ...], nodes: dict[str, list[str]], path: Path) -> dict[str, Any]:
            exclude = [n for layer in kept for n in nodes[layer]]
            return quantize_prepared(prepared, path, "static", calibration=samples, op_types=op_types,
                                     include=include, exclude=exclude, ranges_cache=ranges)

        if tuning.fallback is None:
            info = quantize((), {}, target)
        else:
            assert fallback_inputs is not None
            info, best = _fallback(graph, quantize, prepared.parent, tuning, fallback_inputs, log)
            shutil.copyfile(best, target)
    # "weights": the Linear inputs are the only int8 activations (``_ort_quant.float_consumers_read_float``)
    activations = "Linear inputs only" if include is not None else "every quantized op's inputs and outputs"
    return info | {"preprocessing": preprocessing, "operators": choice, "calibration_samples": len(samples),
                   "calibration_method": "minmax", "int8_activations": activations,
                   "smoothquant": tuning.smoothquant}


def _fallback(graph, quantize, folder: Path, tuning: Int8Tuning, inputs, log) -> tuple[dict[str, Any], Path]:
    """The measured loop of ``torchslim.quantize._fallback`` over ORT sessions; returns the
    chosen try's quantization info (with the record under ``fallback``) and its file."""
    from torchslim.quantize import measured_fallback
    from torchslim.runtime.onnxrt import OnnxModel, make_session

    original, exported, data = inputs
    nodes = layer_nodes(graph, exported)
    tries: list[Path] = []

    def quantize_with(kept: tuple[str, ...]) -> tuple[OnnxModel, tuple[dict[str, Any], Path]]:
        path = folder / f"try-{len(tries)}.onnx"
        tries.append(path)
        info = quantize(kept, nodes, path)
        return OnnxModel(make_session(path), path=path), (info, path)

    result, (info, best) = measured_fallback(original, exported, list(nodes), data, quantize_with,
                                             device=torch.device("cpu"), target_drop=tuning.fallback_target_drop,
                                             max_layers=tuning.fallback_max_layers, log=log)
    return info | {"fallback": result.to_dict(), "kept_in_float_nodes": [n for k in result.kept_in_float
                                                                          for n in nodes[k]]}, best
