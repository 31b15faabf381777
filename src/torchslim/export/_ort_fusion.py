"""ONNX Runtime's transformer fusions for encoder models (BERT-like: MiniLM, RoBERTa, ...),
applied before ORT dynamic int8 quantization.

``onnxruntime.transformers.optimizer.optimize_model(model_type="bert")`` rewrites attention
into one ``Attention`` op, residual + LayerNorm into ``SkipLayerNormalization`` and the
embeddings into ``EmbedLayerNormalization`` by matching the op patterns of the TorchScript
exporter's graph. On torch's dynamo export it recognises only BiasGelu and LayerNorm
(measured on all-MiniLM-L6-v2, torch 2.13 / onnxruntime 1.32: dynamo export -> BiasGelu 6,
LayerNormalization 13, Attention 0; TorchScript export -> EmbedLayerNormalization 1,
Attention 6, SkipLayerNormalization 12, BiasGelu 6). So this path exports with
``torch.onnx.export(dynamo=False)`` and declares batch and sequence axes dynamic.

The TorchScript exporter traces with the example's sizes; a size it bakes in would break
other lengths, which is why the caller checks parity on another batch size *and* on a
shorter sequence, and falls back to the dynamo export when anything fails.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx
import torch
import torch.nn as nn

from torchslim.core.export import is_token_input
from torchslim.export import _common as common

# transformers model_type -> the optimizer's model_type (models whose graphs its "bert" fusions match)
_ENCODERS = {"bert": "bert", "roberta": "bert", "xlm-roberta": "bert", "electra": "bert", "camembert": "bert"}
FUSED_OPS = ("EmbedLayerNormalization", "Attention", "SkipLayerNormalization", "BiasGelu", "LayerNormalization")


def encoder_config(module: nn.Module) -> dict[str, Any] | None:
    """The optimizer's settings for a BERT-like encoder inside ``module``, else None."""
    for sub in module.modules():
        config = getattr(sub, "config", None)
        model_type = getattr(config, "model_type", None)
        if model_type in _ENCODERS and getattr(config, "is_decoder", False) is False:
            return {"model_type": _ENCODERS[model_type], "num_heads": int(config.num_attention_heads),
                    "hidden_size": int(config.hidden_size)}
    return None


def export_fused(module: nn.Module, path: Path, example: tuple[torch.Tensor, ...], names: list[str],
                 output_names: list[str], config: dict[str, Any]) -> dict[str, int]:
    """TorchScript ONNX export of ``module`` + ORT's transformer optimizer, one inline file at
    ``path``; returns the fused-operator counts (only those > 0)."""
    from onnxruntime.transformers.optimizer import optimize_model

    example = common.batch_of_two(example)
    axes = {}
    for name, t in zip(names, example, strict=True):
        axes[name] = {0: "batch", 1: "sequence"} if is_token_input(t) else {0: "batch"}
    axes |= {name: {0: "batch"} for name in output_names}
    raw = path.with_name("torchscript.onnx")
    with common.quiet(), torch.no_grad():
        torch.onnx.export(module, example, str(raw), dynamo=False, input_names=names, output_names=output_names,
                          dynamic_axes=axes, opset_version=17)
        optimized = optimize_model(str(raw), **config)
    counts = {op: n for op, n in optimized.get_fused_operator_statistics().items() if op in FUSED_OPS and n}
    onnx.save_model(optimized.model, str(path), save_as_external_data=False)
    raw.unlink()
    return counts


def fused_dynamic_int8(module: nn.Module, example: tuple[torch.Tensor, ...], names: list[str], config: dict[str, Any],
                       folder: Path, log) -> tuple[Path, dict[str, Any], common.Parity, list[str]] | None:
    """The fused + ORT dynamic int8 model of an encoder, checked on another batch size and a
    shorter sequence: (file, manifest extra, parity, output names), or None (logged) when any
    part fails, so the caller falls back to the dynamo export."""
    from torchslim.export._onnx_parity import check_parity

    batches = with_shorter_sequence(module, common.parity_inputs(common.batch_of_two(example)))
    references = common.reference_outputs(module, batches)
    output_names = ["output"] if len(references[0]) == 1 else [f"output_{i}" for i in range(len(references[0]))]
    fused, final = folder / "fused.onnx", folder / "fused-int8.onnx"
    try:
        log("exporting to ONNX for ORT's transformer fusions (torch.onnx.export, dynamo=False)")
        counts = export_fused(module, fused, example, names, output_names, config)
        if not counts.get("Attention"):
            log(f"ORT's transformer optimizer fused no Attention ({counts}); using the dynamo export")
            return None
        log("ONNX Runtime dynamic int8 quantization of the fused graph")
        extra = {"quantize": "dynamic", "precision": "int8", "quantization": quantize_fused(fused, final)}
        parity = check_parity(final, batches, references, "int8", type(module).__name__)
    except Exception as e:  # any failure of this optional path falls back (ExportError included)
        log(f"transformer-fusion path failed ({common.exporter_reason(e)}); using the dynamo export")
        return None
    extra |= {"exporter": f"torch.onnx.export(dynamo=False) + onnxruntime.transformers.optimize_model, torch "
                          f"{torch.__version__}", "fused_operators": counts}
    return final, extra, parity, output_names


def with_shorter_sequence(module: nn.Module, batches: list[tuple[torch.Tensor, ...]]) -> list[tuple[torch.Tensor, ...]]:
    """``batches`` plus, for token models, the last batch cut to 7 tokens (proves the sequence
    axis is dynamic; skipped if the model itself refuses that length)."""
    last = batches[-1]
    if not any(is_token_input(t) for t in last) or max(t.shape[1] for t in last if t.dim() > 1) <= 7:
        return batches
    shorter = tuple(t[:, :7] if is_token_input(t) else t for t in last)
    try:
        with torch.no_grad():
            module(*shorter)
    except Exception:
        return batches
    return [*batches, shorter]


def quantize_fused(source: Path, target: Path) -> dict[str, Any]:
    """``quantize_dynamic`` (per-channel int8 weights) straight on the optimizer's output.
    ORT's pre-processing cannot run here: its shape inference knows no contrib ops (Attention,
    SkipLayerNormalization) and fails; the optimizer's graph already carries the shapes the
    quantizer needs, and ``DefaultTensorType`` covers the outputs of contrib ops."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from torchslim.export._ort_quant import _INT8_TYPES

    with common.quiet():
        quantize_dynamic(source, target, per_channel=True, weight_type=QuantType.QInt8,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    quantized = onnx.load(str(target), load_external_data=False)
    int8 = sum(1 for init in quantized.graph.initializer if init.data_type in _INT8_TYPES and len(init.dims) >= 1)
    if int8 == 0:
        raise ValueError("quantize_dynamic quantized no weight of the fused graph")
    return {"method": "dynamic", "int8_weight_tensors": int8, "preprocessing": "ORT transformer optimizer (fusions)",
            "per_channel": True, "calibration_batches": 0, "format": "QOperator"}
