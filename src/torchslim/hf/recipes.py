"""What works on all-MiniLM-L6-v2 on CPU: measured findings per quantization method, as data.

``METHODS`` maps each method to the configuration to use, what it gave here, and the trap it
hides. benchmarks/minilm.py builds "torchslim best" with the library verbs themselves.

Where the numbers come from: benchmarks/minilm.py (one process, interleaved, a 50 ms pause
before every timed call), torch 2.13 CPU, torchao 0.18, onnxruntime 1.31, transformers 5.23,
2 threads, fidelity = mean cosine similarity to fp32 over 60 held-out sentences padded to 128
tokens. Two CPUs of the same 2-core cloud machine type were seen: an AMD EPYC exposing AVX2
only, and an AMD EPYC (Zen 5) with AVX512-VNNI and AVX512-BF16 (no AMX). Which method is
fastest depends on which one you get: bf16 and int8 are fast only with the matching
instructions, so ``optimize`` measures them instead of assuming.
"""

from __future__ import annotations

from typing import Any

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
                 "On an AVX2-only CPU (no VNNI) torchao int8 has no fast kernel, eager or compiled: "
                 "1382 ms vs 69 ms fp32 at batch 1 (1 thread) with compile + freezing. With VNNI "
                 "(Zen 5) and compile + freezing: 8.62 ms vs 30.30 ms fp32 eager (3.5x), 0.87x ORT "
                 "dynamic int8 at batch 1, 0.88x at batch 32 (benchmarks/results/minilm.json).",
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
                 "IndexError (a fused partition without output nodes). Per-tensor static activations cost "
                 "~1 point of fidelity: 0.9894 and 1.41x fp32 eager at batch 1 on the AVX2 CPU; "
                 "0.9927 and 3.39x (8.94 ms; 1.08x ORT int8 at batch 32) on Zen 5 with VNNI. Dynamic (is_dynamic=True): "
                 "0.9909, 1.11x. Export with a dynamic batch Dim, or batch 1 is baked in.",
    },
    "bf16": {
        "status": "works",
        "api": "model.to(torch.bfloat16) then torch.compile with inductor freezing",
        "config": {"dtype": "bfloat16", "compile": True, "freezing": True},
        "fidelity": 0.99996,
        "notes": "Fidelity 0.99995 eager, 0.99996 compiled. Fast only on CPUs with AVX512-BF16 or AMX: "
                 "on Zen 5 (AVX512-BF16, no AMX) compiled 10.65 ms vs 30.30 ms fp32 eager (2.85x); on an "
                 "AVX2-only CPU it is emulated and ran at 0.49x fp32 eager.",
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
