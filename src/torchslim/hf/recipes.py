"""What works on all-MiniLM-L6-v2 on CPU: measured findings per quantization method, as data.

The quantize / export engineers read ``METHODS`` (method -> the configuration to use, what it
gave here, and the trap it hides); ``BEST_CPU`` is the configuration benchmarks/minilm.py
measures as "torchslim best" and ``build_best_cpu`` builds it with torch/torchao directly (the
lead swaps it for the torchslim.quantize verbs after merging).

Where the numbers come from: one process, interleaved timing (/tmp experiments reproduced by
benchmarks/minilm.py), torch 2.13 CPU, torchao 0.18, onnxruntime 1.31, transformers 5.23, on
a 2-core AMD EPYC with AVX2 only (no AVX-512, no VNNI, no AMX, no native bf16) shared with other
jobs; fidelity = mean cosine similarity to fp32 over 30 held-out sentences padded to 128 tokens.
Latency ratios are to fp32 eager at batch 1 x 128 on the same machine in the same run.
On AVX-512/AMX machines (where the issue's earlier numbers were taken) bf16 is ~4x faster than
fp32; on this AVX2 machine it is SLOWER than fp32 (emulated), so the best method is per-CPU.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

# method -> recommended configuration and what it gave. "status": works | poor | fails.
METHODS: dict[str, dict[str, Any]] = {
    "dynamic": {
        "status": "works",
        "api": "torchao.quantization.quantize_(model, Int8DynamicActivationInt8WeightConfig())",
        "config": {"granularity": "PerRow() (the default: per-token activations, per-channel weights)",
                   "act_mapping_type": "SYMMETRIC"},
        "fidelity": 0.9973,
        "notes": "Per-token activation scales are what keep fidelity: torch.ao's per-tensor dynamic int8 "
                 "gives 0.950 (the issue saw 0.89 on other text) and its per-channel qconfig 0.977. "
                 "On this AVX2-only CPU (no VNNI) torchao int8 has no fast kernel, eager or compiled: "
                 "benchmarks/minilm.py measured 1382 ms vs 69 ms fp32 at batch 1 (1 thread) with "
                 "compile + freezing. Pick it only on CPUs with VNNI/AMX, after measuring.",
    },
    "dynamic-torch.ao": {
        "status": "poor",
        "api": "torch.ao.quantization.quantize_dynamic(model, {nn.Linear: per_channel_dynamic_qconfig})",
        "config": {"qconfig": "per_channel_dynamic_qconfig", "dtype": "torch.qint8"},
        "fidelity": 0.9766,
        "notes": "Deprecated path; the default qconfig is per-tensor (fidelity 0.950). Only for models "
                 "torchao cannot handle. nn.TransformerEncoder's fast path (torch._transformer_encoder_"
                 "layer_fwd) reads the Linear weights directly and breaks on quantized Linears: set "
                 "torch.backends.mha.set_fastpath_enabled(False) or skip those layers. BERT from "
                 "transformers does not use that fast path.",
    },
    "static": {
        "status": "see PT2E findings",
        "api": "prepare_pt2e / convert_pt2e with X86InductorQuantizer, then torch.compile with "
               "torch._inductor.config.freezing=True",
        "config": {"quantizer": "X86InductorQuantizer", "is_dynamic": False, "calibration_batches": 16},
        "fidelity": 0.9894,
        "notes": "Works once the model has no dead Linear+Tanh pooler (torchslim.hf loads encoders with "
                 "add_pooling_layer=False): with it, torchao 0.18's _annotate_linear_unary raised "
                 "IndexError (a fused partition without output nodes). 1.41x fp32 eager at batch 1 here, "
                 "but per-tensor static activations cost ~1 point of fidelity (0.9894 with 16 "
                 "calibration sentences): just outside a 1-point budget. Dynamic (is_dynamic=True): "
                 "0.9909, 1.11x. Export with a dynamic batch Dim, or batch 1 is baked in.",
    },
    "bf16": {
        "status": "works",
        "api": "model.to(torch.bfloat16) then torch.compile with inductor freezing",
        "config": {"dtype": "bfloat16", "compile": True, "freezing": True},
        "fidelity": 0.99996,
        "notes": "Fidelity 0.99995 eager, 0.99996 compiled; compiled it ran at 0.49x fp32 eager here. Fast only on CPUs with AVX512-BF16 or AMX (issue: 5.6 ms vs "
                 "16.5 ms fp32 there); emulated and much slower than fp32 on AVX2-only CPUs: check "
                 "torch.backends.mkldnn / cpu capability before picking it.",
    },
    "weight-only": {
        "status": "poor",
        "api": "torchao Int8WeightOnlyConfig()",
        "config": {},
        "fidelity": None,  # not measured on MiniLM
        "notes": "Smaller weights but slower than fp32 in eager on CPU (dequantizes every call).",
    },
    "onnxruntime-dynamic": {
        "status": "works",
        "api": "torch.onnx.export(dynamo=True, external_data=False) then "
               "onnxruntime.quantization.quantize_dynamic(per_channel=True, weight_type=QInt8)",
        "config": {"per_channel": True, "weight_type": "QInt8", "quant_pre_process": "skip"},
        "fidelity": 0.99103,  # 38.8 ms vs 68.9 ms fp32 eager at batch 1, 1 thread (benchmarks/minilm.py)
        "notes": "Export inline (external_data=False): quant_pre_process cannot read a dynamo export with "
                 "external data, and its symbolic shape inference fails on it; quantize_dynamic needs "
                 "neither. Do not call the ONNX output 'embedding': it collides with a node name and "
                 "ORT refuses the model ('Duplicate definition of name').",
    },
}

# What benchmarks/minilm.py measures as torchslim's best on CPU. Chosen for fidelity (0.997) before
# the 1-thread timing existed; on AVX2-only CPUs it is 20x slower than fp32 (see METHODS["dynamic"]).
# Next to measure: "pt2e-x86-dynamic+compile" (AVX2) or "bf16+compile" (AVX512-BF16 / AMX).
BEST_CPU: dict[str, Any] = {
    "method": "torchao-int8-dynamic+compile",
    "steps": ["quantize(method=dynamic)", "runtime=compile (inductor, freezing=True)"],
}


def build_best_cpu(model: torch.nn.Module, example: tuple[torch.Tensor, ...],
                   calibration: list[tuple[torch.Tensor, ...]] | None = None):
    """``BEST_CPU`` built with torch/torchao directly; returns a callable taking the model's inputs.
    ``calibration``: training batches for static quantization (default: ``example``)."""
    method = BEST_CPU["method"]
    model = copy.deepcopy(model).eval()
    if method == "torchao-int8-dynamic+compile":
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

        quantize_(model, Int8DynamicActivationInt8WeightConfig())
    elif method == "pt2e-x86-static+compile":
        model = _pt2e_x86(model, example, dynamic=False, calibration=calibration)
    elif method == "pt2e-x86-dynamic+compile":
        model = _pt2e_x86(model, example, dynamic=True)
    elif method == "bf16+compile":
        model = model.to(torch.bfloat16)
    else:
        raise ValueError(f"unknown BEST_CPU method {method!r}")
    return compile_frozen(model, example)


def compile_frozen(model: torch.nn.Module, example: tuple[torch.Tensor, ...]):
    """torch.compile with inductor freezing (weights become constants, so int8 weight packing and
    constant folding happen once at compile time: without freezing, quantized graphs run slower
    than fp32). ``dynamic=False``: each batch size gets its own specialized graph."""
    import torch._inductor.config as inductor_config

    compiled = torch.compile(model, dynamic=False)
    with torch.no_grad(), inductor_config.patch(freezing=True):
        compiled(*example)
    return compiled


def _pt2e_x86(model: torch.nn.Module, example: tuple[torch.Tensor, ...], *, dynamic: bool,
              calibration: list[tuple[torch.Tensor, ...]] | None = None):
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as x86
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    batch = tuple(torch.cat([t, t]) if t.shape[0] == 1 else t for t in example)  # batch 1 would be baked in
    dim = torch.export.Dim("batch", min=1, max=4096)
    graph = torch.export.export(model, batch, dynamic_shapes=tuple({0: dim} for _ in batch), strict=False).module()
    quantizer = x86.X86InductorQuantizer()
    quantizer.set_global(x86.get_default_x86_inductor_quantization_config(is_dynamic=dynamic))
    prepared = prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for calibration_batch in calibration or [batch]:
            prepared(*calibration_batch)
    return convert_pt2e(prepared)
