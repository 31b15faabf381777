"""all-MiniLM-L6-v2 on CPU: torchslim's OpenVINO artifacts (fp32, NNCF int8) against its ONNX
Runtime dynamic int8 export, and the OpenVINO compile settings the runtime uses.

One process, interleaved: every round runs every variant on every workload in turn, each
timed call after a 50 ms pause (no variant pays for another's spinning worker threads), and
the median over rounds is reported. Workloads: batch 1 x 128 tokens, batch 32 x 128, and one
short real sentence (its own length, no padding). Fidelity: mean cosine to eager fp32 over
32 held-out test sentences at their own lengths.

    ort int8 (torchslim)        export(format=onnx, quantize=dynamic): the onnx-int8 candidate; for
                                an encoder, TorchScript export + ORT transformer fusions + quantize_dynamic
    ort int8 dynamo unfused     the same quantization of torchslim's dynamo fp32 ONNX export (the
                                onnx-int8 candidate before the fusions)
    ov fp32 (torchslim)         export(format=openvino): convert_model on the torch module
    ov int8 (torchslim)         export(format=openvino, quantize=int8): NNCF, ModelType.TRANSFORMER
    ov fp32 from onnx           openvino.convert_model on torchslim's dynamo ONNX export instead
    ov fp32 THROUGHPUT          the torchslim IR compiled with PERFORMANCE_HINT=THROUGHPUT
    ov fp32 all cores           the torchslim IR without INFERENCE_NUM_THREADS (OpenVINO's default)

Usage: python -m benchmarks run minilm_openvino [--rounds 10] [--threads 2]
Writes benchmarks/results/minilm_openvino.json.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from benchmarks._harness import MINILM, MINILM_DATA, Benchmark, Context, interleaved_ms, load_zoo

PAUSE_S = 0.05


def _ov(xml: Path, config: dict):
    import openvino as ov

    from torchslim.runtime.openvino import OpenVINOModel

    core = ov.Core()
    return OpenVINOModel(core.compile_model(core.read_model(str(xml)), "CPU", config))


def build(model, bundle, names, folder: Path, threads: int) -> dict:
    import openvino as ov

    from torchslim.artifacts import load
    from torchslim.export import ArtifactInfo, export, quantize_onnx

    example = bundle.example_inputs(2)
    info = ArtifactInfo(bundle.task, names)
    variants, build_s = {}, {}
    for name, options in [("ort int8 (torchslim)", {"format": "onnx", "quantize": "dynamic"}),
                          ("ov fp32 (torchslim)", {"format": "openvino"}),
                          ("ov int8 (torchslim)", {"format": "openvino", "quantize": "int8"})]:
        started = time.perf_counter()
        path = export(model, folder / name.split(" (")[0].replace(" ", "-"), example, options,
                      data=bundle if options.get("quantize") == "int8" else None, info=info)
        build_s[name] = time.perf_counter() - started
        variants[name] = load(path)
        print(f"built {name} in {build_s[name]:.0f}s", flush=True)
    fp32_onnx = export(model, folder / "ort-fp32", example, "onnx", info=info)
    variants["ort int8 dynamo unfused"] = load(quantize_onnx(fp32_onnx, folder / "ort-int8-unfused", "dynamic",
                                                                 inputs=example))
    converted = folder / "from-onnx.xml"
    ov.save_model(ov.convert_model(str(fp32_onnx)), str(converted), compress_to_fp16=False)
    latency = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
    ir = folder / "ov-fp32" / "model.xml"
    variants["ov fp32 from onnx"] = _ov(converted, latency)
    variants["ov fp32 THROUGHPUT"] = _ov(ir, latency | {"PERFORMANCE_HINT": "THROUGHPUT"})
    variants["ov fp32 all cores"] = _ov(ir, {"PERFORMANCE_HINT": "LATENCY"})
    from torchslim.artifacts import read_manifest

    build_s["fused operators"] = read_manifest(folder / "ort-int8" / "model.onnx").extra.get("fused_operators")
    return variants, build_s


def parameters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=min(os.cpu_count() or 1, 2))


def run(args: argparse.Namespace, ctx: Context) -> dict:
    torch.set_num_threads(args.threads)
    handle, bundle = load_zoo(MINILM, MINILM_DATA, quiet=True)
    model = handle.model.eval()
    ids, mask = bundle.example_inputs(32)
    lengths = mask.sum(1)
    short = int(lengths.argmin())
    workloads = {"b1x128": (ids[:1], torch.ones_like(mask[:1])), "b32x128": (ids, torch.ones_like(mask)),
                 f"sentence ({int(lengths[short])} tokens)": (ids[short:short + 1, :lengths[short]],
                                                              mask[short:short + 1, :lengths[short]])}
    with tempfile.TemporaryDirectory() as tmp:
        variants, build_s = build(model, bundle, handle.hf.input_names, Path(tmp), args.threads)
        fidelity = {}
        with torch.no_grad():
            singles = [(ids[i:i + 1, :lengths[i]], mask[i:i + 1, :lengths[i]]) for i in range(len(ids))]
            expected = torch.cat([model(*s) for s in singles])
            for name, fn in variants.items():
                got = torch.cat([fn(*s) for s in singles])
                fidelity[name] = float(torch.nn.functional.cosine_similarity(got, expected).mean())
        with torch.no_grad():
            median = interleaved_ms(variants, workloads, args.rounds, pause_s=PAUSE_S, workload_major=True)
    table = {n: {w: round(median[n][w], 2) for w in workloads} | {"fidelity": round(fidelity[n], 5)}
             for n in variants}
    print(f"{'variant':24}" + "".join(f"{w:>22}" for w in workloads) + f"{'fidelity':>10}")
    for n, row in table.items():
        print(f"{n:24}" + "".join(f"{row[w]:>19.2f} ms" for w in workloads) + f"{row['fidelity']:>10.4f}")
    return {"threads": args.threads, "rounds": args.rounds, "median_ms": table,
            "build_s": {k: round(v, 1) if isinstance(v, float) else v for k, v in build_s.items()}}


BENCHMARK = Benchmark(name="minilm_openvino",
                      description="all-MiniLM-L6-v2: torchslim's OpenVINO artifacts vs its ORT int8 export, and OpenVINO settings",
                      parameters=parameters, run=run)
