"""Why was torchslim's ORT dynamic int8 of MiniLM slower than ORT's own at batch 1? Ten ORT
variants of all-MiniLM-L6-v2, one process, interleaved, the same workloads as benchmarks/minilm.py.

Variants (all ORT `quantize_dynamic`, int8 weights, unless said):

    plain(dynamo).q        torch.onnx.export (dynamo) -> per-channel   (the "ORT quantize_dynamic" peer)
    ts.q                   TorchScript export (dynamo=False) -> per-channel
    fused.q                TorchScript -> optimize_model("bert") -> per-channel  (torchslim's graph,
                           and the "ORT optimizer + quantize_dynamic" peer)
    fused.qmm(attn fp32)   as fused.q, only MatMul quantized: the fused Attention op stays fp32
    noattn.q               optimizer with Attention fusion off (SkipLayerNorm, BiasGelu only)
    fused.q per-tensor     fused.q with per-tensor weight scales
    fused.q t2 / plain.q t2  intra_op_num_threads=2, inter_op 1 (torchslim's session options)
                           instead of ORT's defaults
    fused.q nospin         session.intra_op.allow_spinning=0

Usage: python -m benchmarks run minilm_ort_variants [--rounds 5]
Writes benchmarks/results/minilm_ort_variants.json.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from pathlib import Path

import torch

from benchmarks._harness import MINILM_INPUTS as NAMES
from benchmarks._harness import Benchmark, Context, load_minilm, singles
from benchmarks.minilm import fidelity, measure

WORKLOADS = ("b1x128 ms", "b32x128 ms", "sentences s")


def _session(path: Path, threads: int = 0, config: dict | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    if threads:
        options.inter_op_num_threads = 1
    for key, value in (config or {}).items():
        options.add_session_config_entry(key, value)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda ids, mask: torch.from_numpy(session.run(None, {"input_ids": ids.numpy(),
                                                                  "attention_mask": mask.numpy()})[0])


def build(model, example, folder: Path) -> dict:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}}
    with torch.no_grad():
        torch.onnx.export(model, example, str(folder / "plain.onnx"), input_names=NAMES, output_names=["embedding_out"],
                          dynamic_shapes=(axes["input_ids"], axes["attention_mask"]), external_data=False)
        torch.onnx.export(model, example, str(folder / "ts.onnx"), dynamo=False, input_names=NAMES,
                          output_names=["embedding_out"], dynamic_axes=axes, opset_version=17)
    optimize_model(str(folder / "ts.onnx"), model_type="bert", num_heads=12,
                   hidden_size=384).save_model_to_file(str(folder / "fused.onnx"))
    no_attention = FusionOptions("bert")
    no_attention.enable_attention = False
    optimize_model(str(folder / "ts.onnx"), model_type="bert", num_heads=12, hidden_size=384,
                   optimization_options=no_attention).save_model_to_file(str(folder / "noattn.onnx"))
    contrib = {"DefaultTensorType": onnx.TensorProto.FLOAT}  # the fused graphs' contrib ops need it
    jobs = {"plain.q": ("plain", {}), "ts.q": ("ts", {}), "fused.q": ("fused", contrib),
            "fused.qmm": ("fused", contrib | {"op_types": ["MatMul"]}), "noattn.q": ("noattn", contrib),
            "fused.qpt": ("fused", contrib | {"per_channel": False})}
    with contextlib.chdir(folder):
        for target, (source, extra) in jobs.items():
            extra = dict(extra)
            per_channel, op_types = extra.pop("per_channel", True), extra.pop("op_types", None)
            quantize_dynamic(f"{source}.onnx", f"{target}.onnx", per_channel=per_channel,
                             weight_type=QuantType.QInt8, extra_options=extra, op_types_to_quantize=op_types)
    q = {name: folder / f"{name}.onnx" for name in jobs}
    return {"plain(dynamo).q": _session(q["plain.q"]), "ts.q": _session(q["ts.q"]), "fused.q": _session(q["fused.q"]),
            "fused.qmm(attn fp32)": _session(q["fused.qmm"]), "noattn.q": _session(q["noattn.q"]),
            "fused.q per-tensor": _session(q["fused.qpt"]), "fused.q t2": _session(q["fused.q"], threads=2),
            "plain.q t2": _session(q["plain.q"], threads=2),
            "fused.q nospin": _session(q["fused.q"], config={"session.intra_op.allow_spinning": "0"})}


def parameters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=int, default=5)


def run(args: argparse.Namespace, ctx: Context) -> dict:
    model, bundle = load_minilm()
    ids, mask = bundle.example_inputs(32)
    fixed = {WORKLOADS[0]: (ids[:1], mask[:1]), WORKLOADS[1]: (ids, mask)}
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="minilm-ort-") as tmp, torch.no_grad():
        variants = {"fp32 eager": model} | build(model, bundle.example_inputs(2), Path(tmp))
        fid = fidelity(variants, model, singles(bundle.test))

        def write(median: dict, done: int) -> None:
            rows = {n: {"fidelity": round(fid[n], 5)} | {w: round(median[n][w], 4) for w in WORKLOADS} for n in median}
            results.update(rounds=done, rows=rows)
            print(f"wrote {ctx.save(results)} ({done} rounds)", flush=True)

        measure(variants, fixed, bundle.test, args.rounds, write, workloads=WORKLOADS)
    return results


BENCHMARK = Benchmark(name="minilm_ort_variants",
                      description="why torchslim's ORT dynamic int8 of MiniLM was slower at batch 1: ten ORT variants",
                      parameters=parameters, run=run)
