"""all-MiniLM-L6-v2: ONNX Runtime static int8 (QDQ) made to survive a transformer, step by step.

Fidelity (mean cosine to fp32 eager) of each variant on the held-out test sentences, each alone at
its own length, and on the validation split (what fallback steers by, padded to 128):

    padded batches, all ops        what torchslim did before: 16 padded train batches, every op type
    per sentence, all ops          calibrated one train sentence at a time at its own length
    per sentence, all MatMul       ... quantizing only MatMul/Gemm (attention's score/value MatMuls too)
    per sentence, Linear only      ... only the weight-carrying MatMul/Gemm (torchslim's "auto" here),
                                   and only their inputs in int8 (their outputs and the residual
                                   Add's copy of a LayerNorm output stay float, as in PT2E)
    + SmoothQuant 0.5 / auto       SmoothQuant on a copy of the torch model before the export
    + fallback auto                torchslim.export(..., fallback="auto"): the Linear layers that cost
                                   the most on the validation split stay in float (target 0.5 points)

Then latency of the final static artifact (and all-int8 static) against ORT dynamic int8
(torchslim's fused export), at batch 1 x 128 and 32 x 128 tokens (real test sentences padded to
128), raw ORT sessions with torchslim's options, in ONE process, interleaved, 50 ms pause before
each timed call, medians.

Usage: python -m benchmarks run minilm_ort_static [--rounds 15]
Writes benchmarks/results/minilm_ort_static.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks._harness import MINILM_INPUTS as NAMES
from benchmarks._harness import Benchmark, Context, interleaved_ms, load_minilm, singles

PAUSE_S = 0.05


def _session(path: Path):
    from torchslim.runtime.onnxrt import OnnxModel, make_session

    return OnnxModel(make_session(path))


def _fidelities(fn, references, bundle, held_out) -> dict:
    from torchslim.data import fidelity

    expected, val_reference = references
    got = torch.cat([fn(*s).float() for s in held_out])
    return {"test": round(float(F.cosine_similarity(got, expected).mean()), 5),
            "val": round(fidelity(fn, val_reference, bundle.val), 5)}


def quantized_variants(model, bundle, example, folder: Path) -> dict:
    """name -> static int8 file, built with torchslim's pieces on one fp32 export per model."""
    from torchslim.export import _common as common
    from torchslim.export._onnx import write_fp32
    from torchslim.export._ort_static import quantize_static_onnx
    from torchslim.export._template import smoothed
    from torchslim.quantize import Int8Tuning

    batches = common.calibration_batches(bundle, common.signature_of(example), 16)
    samples = common.calibration_samples(batches, NAMES)
    fp32 = folder / "fp32.onnx"
    write_fp32(model, fp32, example, NAMES)
    plans = {"padded batches, all ops": (fp32, batches, "all"), "per sentence, all ops": (fp32, samples, "all"),
             "per sentence, all MatMul": (fp32, samples, "matmul"),
             "per sentence, Linear only": (fp32, samples, "weights")}
    for alpha in (0.5, "auto"):
        copied, _ = smoothed(model, example, samples, alpha, lambda _m: None, before="the ONNX export")
        write_fp32(copied, folder / f"sq-{alpha}.onnx", example, NAMES)
        plans[f"per sentence, Linear only, SmoothQuant {alpha}"] = (folder / f"sq-{alpha}.onnx", samples, "weights")
    built = {}
    for i, (name, (source, feeds, operators)) in enumerate(plans.items()):
        started = time.perf_counter()
        built[name] = folder / f"static-{i}.onnx"
        quantize_static_onnx(source, built[name], samples=feeds, tuning=Int8Tuning(), operators=operators)
        print(f"built {name} in {time.perf_counter() - started:.0f}s", flush=True)
    return built


def torchslim_exports(model, bundle, example, folder: Path, smoothquant) -> dict:
    """The artifacts ``torchslim.export`` writes: ORT dynamic int8, static int8 with fallback."""
    import torchslim
    from torchslim.artifacts import read_manifest
    from torchslim.errors import TorchslimError
    from torchslim.export import ArtifactInfo

    out = {}
    plans = {"ORT dynamic int8 (torchslim, fused)": ("dynamic", {"quantize": "dynamic"}),
             "ORT static int8 + fallback auto": ("fallback", {"quantize": "static", "fallback": "auto",
                                                              "smoothquant": smoothquant})}
    record: dict = {}
    for name, (sub, options) in plans.items():
        started = time.perf_counter()
        try:
            out[name] = torchslim.export(copy.deepcopy(model), folder / sub, example, {"format": "onnx", **options},
                                         data=bundle if options["quantize"] == "static" else None,
                                         info=ArtifactInfo("embedding", NAMES), log=print)
        except TorchslimError as e:  # refused by the parity check: say so, keep measuring the rest
            print(f"{name}: refused: {e.message[:300]}", flush=True)
            record["error"] = e.message
            continue
        print(f"built {name} in {time.perf_counter() - started:.0f}s", flush=True)
        record |= {"build_s": round(time.perf_counter() - started, 1)} if options["quantize"] == "static" else {}
    if "ORT static int8 + fallback auto" in out:
        record |= read_manifest(out["ORT static int8 + fallback auto"]).extra["quantization"]
    return out, record


def latency(paths: dict, fixed: dict, rounds: int) -> dict:
    sessions = {name: _session(path) for name, path in paths.items()}
    median = interleaved_ms(sessions, fixed, rounds, pause_s=PAUSE_S)
    return {n: {w: round(v, 3) for w, v in per.items()} for n, per in median.items()}


def parameters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=int, default=15, help="interleaved timing rounds")
    parser.add_argument("--smoothquant", default=None, help="SmoothQuant for the fallback export (e.g. auto)")


def run(args: argparse.Namespace, ctx: Context) -> dict:
    model, bundle = load_minilm()
    example = bundle.example_inputs(2, split="train")
    ids, mask = bundle.example_inputs(32)
    fixed = {"b1x128 ms": (ids[:1], mask[:1]), "b32x128 ms": (ids, mask)}
    held_out = singles(bundle.test)
    smoothquant = None if args.smoothquant in (None, "none") else (
        args.smoothquant if args.smoothquant == "auto" else float(args.smoothquant))
    with tempfile.TemporaryDirectory(prefix="minilm-ort-static-") as tmp, torch.no_grad():
        variants, record = torchslim_exports(model, bundle, example, Path(tmp), smoothquant)
        variants |= quantized_variants(model, bundle, example, Path(tmp))
        from torchslim.data import predict

        references = (torch.cat([model(*s) for s in held_out]), predict(model, bundle.val)[0])
        fid = {name: _fidelities(_session(path), references, bundle, held_out) for name, path in variants.items()}
        print(json.dumps(fid, indent=1), flush=True)
        result = {"model": "hf:minilm (all-MiniLM-L6-v2)", "rounds": 0,
                  "test_sentences": len(held_out), "val_sentences": len(bundle.val),
                  "threads": torch.get_num_threads(), "fidelity": fid,
                  "latency_median_ms": None, "fallback": record.get("fallback"), "fallback_smoothquant": smoothquant,
                  "fallback_operators": record.get("operators"), "fallback_build_s": record.get("build_s"),
                  "fallback_error": record.get("error"), "fallback_calibration_method": record.get("calibration_method"),
                  "fallback_int8_activations": record.get("int8_activations")}
        ctx.save(result)  # a killed timing run keeps these
        timed = {n: variants[n] for n in ("ORT dynamic int8 (torchslim, fused)", "per sentence, Linear only",
                                          "ORT static int8 + fallback auto") if n in variants}
        median = latency(timed, fixed, args.rounds)
    result |= {"rounds": args.rounds, "latency_median_ms": median,
               "load_average_at_end": [round(x, 2) for x in os.getloadavg()]}
    print(json.dumps(median, indent=1))
    return result


BENCHMARK = Benchmark(name="minilm_ort_static",
                      description="all-MiniLM-L6-v2: ONNX Runtime static int8 (QDQ) made to survive a transformer, step by step",
                      parameters=parameters, run=run)
