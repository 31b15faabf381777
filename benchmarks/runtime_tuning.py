"""Runtime settings before and after tuning (torchslim.pipeline._tune), and ORT's spinning threads.

1. Artifacts: all-MiniLM-L6-v2 as torchslim's ONNX Runtime dynamic int8 (``torchslim.export``,
   format onnx, quantize dynamic: the fused export), digits-cnn as ONNX fp32 and OpenVINO fp32.
2. Tuning: the optimize-time search (``tune``: at most 4 tries, the default first, timed
   interleaved in a bounded time) per objective: latency (batch 1) and throughput (batch 32).
3. Before/after: the default setting and each objective's pick, loaded side by side and timed
   interleaved in one process (MiniLM: batch 1 x 128 and 32 x 128 real tokens, no padding;
   digits-cnn: batch 1 and 32), medians over the rounds.
4. Spinning: two ORT sessions of MiniLM in one process; the second is timed at batch 1 right after
   the first one's call, with the first one's threads spinning (ORT's default) or not (torchslim's).

Usage: python -m benchmarks run runtime_tuning [--rounds 7] [--tune-seconds 30]
Writes benchmarks/results/runtime_tuning.json. Bounded to a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks._harness import MINILM_INPUTS as NAMES
from benchmarks._harness import Benchmark, Context, full_length, load_minilm, load_zoo, uptime


def build(folder: Path) -> dict:
    """{name: (artifact, runtime, {workload: inputs})}."""
    import torchslim
    from torchslim.data import load_data

    model, bundle = load_minilm()
    example = tuple(t[:2] for t in bundle.example_inputs(2, split="train"))
    from torchslim.export import ArtifactInfo

    minilm = torchslim.export(model, folder / "minilm-int8", example, {"format": "onnx", "quantize": "dynamic"},
                              info=ArtifactInfo(task="embedding", input_names=NAMES))
    handle, digits = load_zoo("digits-cnn", quiet=True)
    cnn_example = tuple(t[:2] for t in digits.example_inputs(2, split="train"))
    cnn_onnx = torchslim.export(handle.model.eval(), folder / "cnn-onnx", cnn_example, {"format": "onnx"})
    cnn_ov = torchslim.export(handle.model.eval(), folder / "cnn-ov", cnn_example, {"format": "openvino"})
    test = bundle.test
    tokens = {"b1x128": full_length(test, 1, 128), "b32x128": full_length(test, 32, 128)}
    images = {"b1": load_data("digits").example_inputs(1), "b32": load_data("digits").example_inputs(32)}
    return {"minilm onnx int8": (minilm, "onnxruntime", tokens), "digits-cnn onnx fp32": (cnn_onnx, "onnxruntime", images),
            "digits-cnn openvino fp32": (cnn_ov, "openvino", images)}


def tune_all(artifacts: dict, seconds: float) -> dict:
    from torchslim.pipeline._recipe import TuningSpec
    from torchslim.pipeline._tune import describe, tune

    spec = TuningSpec(max_tries=4, max_seconds=seconds)
    picks = {}
    for name, (path, runtime, inputs) in artifacts.items():
        workloads = list(inputs)
        for objective, workload in (("latency", workloads[0]), ("throughput", workloads[-1])):
            started = time.perf_counter()
            settings, record = tune(path, runtime, spec, objective=objective, batch_sizes=(1, 32),
                                    make_inputs=lambda b, i=inputs, w=workload: i[w], device=torch.device("cpu"))
            picks[(name, objective)] = settings
            tries = [{"settings": describe(_typed(runtime, t.settings)), "p50_ms": t.p50_ms, "runs": t.runs,
                      "error": t.error, "chosen": t.chosen} for t in record.tries]
            print(f"{name} {objective}: chose {describe(settings)} in {time.perf_counter() - started:.0f}s; "
                  + "; ".join(f"{t['settings']} {t['p50_ms']}" for t in tries), flush=True)
            picks[(name, objective, "tries")] = tries
    return picks


def _typed(runtime: str, settings: dict):
    from torchslim.runtime._settings import parse_settings

    return parse_settings(runtime, settings)


def before_after(artifacts: dict, picks: dict, rounds: int) -> dict:
    """Default vs each objective's pick, interleaved, medians per workload."""
    import torchslim
    from torchslim.pipeline._tune import describe
    from torchslim.runtime._settings import default_settings

    out = {}
    for name, (path, runtime, inputs) in artifacts.items():
        variants = {"default": default_settings(runtime)}
        for objective in ("latency", "throughput"):
            chosen = picks[(name, objective)]
            if chosen != variants["default"] and chosen not in variants.values():
                variants[f"tuned ({objective}): {describe(chosen)}"] = chosen
        fns = {label: torchslim.load(path, settings=s) for label, s in variants.items()}
        times = {(label, w): [] for label in fns for w in inputs}
        with torch.no_grad():
            for fn in fns.values():
                for x in inputs.values():
                    fn(*x)
            for _ in range(rounds):
                for label, fn in fns.items():
                    for w, x in inputs.items():
                        calls = 1 if w.startswith("b32") and name.startswith("minilm") else 20
                        t0 = time.perf_counter()
                        for _ in range(calls):
                            fn(*x)
                        times[(label, w)].append((time.perf_counter() - t0) * 1e3 / calls)
        medians = {label: {w: round(statistics.median(times[(label, w)]), 4) for w in inputs} for label in fns}
        out[name] = {"runtime": runtime, "settings": {label: s.model_dump() for label, s in variants.items()},
                     "median_ms": medians,
                     "speedup_vs_default": {label: {w: round(medians["default"][w] / medians[label][w], 3) for w in inputs}
                                            for label in fns}}
        print(name, json.dumps(out[name]["median_ms"]), flush=True)
    return out


def spinning(path: Path, inputs: tuple, rounds: int) -> dict:
    """Session B timed at batch 1 right after session A's call: A spinning (ORT default) or not."""
    import torchslim
    from torchslim.runtime._settings import OrtSettings

    b = torchslim.load(path, settings=OrtSettings())
    neighbours = {"neighbour spinning": torchslim.load(path, settings=OrtSettings(allow_spinning=True)),
                  "neighbour not spinning": torchslim.load(path, settings=OrtSettings())}
    times = {k: [] for k in neighbours}
    with torch.no_grad():
        for fn in (b, *neighbours.values()):
            fn(*inputs)
        for _ in range(rounds * 10):
            for label, a in neighbours.items():
                a(*inputs)
                t0 = time.perf_counter()
                b(*inputs)
                times[label].append((time.perf_counter() - t0) * 1e3)
                time.sleep(0.05)  # both: the neighbour's spin window (ORT spins a few ms) is what differs
    medians = {k: round(statistics.median(v), 4) for k, v in times.items()}
    print("spinning:", medians, flush=True)
    return {"median_ms_b1x128": medians, "calls": len(next(iter(times.values())))}


def parameters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--tune-seconds", type=float, default=30.0, help="each tuning search's time bound")


def run(args: argparse.Namespace, ctx: Context) -> dict:
    from torchslim.bench import set_threads

    set_threads()
    started = time.perf_counter()
    result: dict = {"threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory(prefix="runtime-tuning-") as tmp:
        artifacts = build(Path(tmp))
        print(f"built in {time.perf_counter() - started:.0f}s; {uptime()}", flush=True)
        picks = tune_all(artifacts, args.tune_seconds)
        result["tuning"] = {f"{name} / {objective}": {"chosen": picks[(name, objective)].model_dump(),
                                                      "tries": picks[(name, objective, "tries")]}
                            for name in artifacts for objective in ("latency", "throughput")}
        result["before_after"] = before_after(artifacts, picks, args.rounds)
        path, _, tokens = artifacts["minilm onnx int8"]
        result["spinning"] = spinning(path, tokens["b1x128"], args.rounds)
    result["wall_s"] = round(time.perf_counter() - started, 1)
    return result


BENCHMARK = Benchmark(name="runtime_tuning",
                      description="runtime settings before and after optimize's tuning search, and ORT's spinning threads",
                      parameters=parameters, run=run)
