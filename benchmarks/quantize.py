"""Quantization benchmark: fp32 eager vs every method x runtime on the zoo models.

    python -m benchmarks run quantize [--models digits-cnn,resnet-mini,tiny-transformer]
                                      [--methods dynamic,static,...] [--rounds 5]

For each model and batch size (1, 32) it prints latency p50 (median over interleaved rounds:
every variant is timed once per round, so load from other processes hits all of them alike),
the speed-up over fp32 eager, the artifact's bytes on disk, and test accuracy measured on the
runtime itself. Methods that are slower than fp32 are printed like the others. Results are
saved to benchmarks/results/quantize.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks._harness import Benchmark, Context, load_zoo
from torchslim.artifacts import load, save_exported
from torchslim.bench import accuracy, set_threads, time_callable
from torchslim.errors import TorchslimError
from torchslim.quantize import fast_runtime, quantize

RUNTIMES = ("eager", "compile")


def parameters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", default="digits-cnn,resnet-mini,tiny-transformer")
    parser.add_argument("--methods", default="dynamic,static,qat,weight-only,int4,bf16,fp16")
    parser.add_argument("--runtimes", default="eager,compile")
    parser.add_argument("--batch-sizes", default="1,32")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--qat-epochs", type=int, default=1)


def run(args: argparse.Namespace, ctx: Context) -> dict:
    threads = set_threads()
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    rows = []
    for model_name in args.models.split(","):
        rows += bench_model(model_name, args.methods.split(","), args.runtimes.split(","), batch_sizes, args)
    print_table(rows, batch_sizes)
    return {"threads": threads, "rows": rows}


def bench_model(model_name, methods, runtimes, batch_sizes, args) -> list[dict]:
    handle, data = load_zoo(model_name)
    model = handle.model
    example = data.example_inputs(2)
    variants = []  # (method, runtime, callable, artifact path)
    tmp = Path(tempfile.mkdtemp(prefix="torchslim-qbench-"))
    rows = []
    fp32_path = save_exported(model, tmp / "fp32.pt2", example)
    for runtime in runtimes:
        variants.append(("fp32", runtime, fp32_path))
    for method in methods:
        options = {"method": method, "epochs": args.qat_epochs} if method == "qat" else {"method": method}
        start = time.perf_counter()
        try:
            quantized = quantize(model, options, data=data)
            path = save_exported(quantized, tmp / f"{method}.pt2", example, runtime=fast_runtime(method))
        except TorchslimError as e:
            rows.append({"model": model_name, "method": method, "runtime": "-", "error": e.message.split(". ")[0]})
            continue
        print(f"{model_name}: {method} quantized and saved in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        for runtime in runtimes:
            variants.append((method, runtime, path))
    loaded = []
    for method, runtime, path in variants:
        fn = load(path, runtime=runtime)
        start = time.perf_counter()
        with torch.no_grad():
            acc = accuracy(fn, data.test, batch_size=32)  # 32: a shape the timing compiles anyway
        inputs = {b: data.example_inputs(b) for b in batch_sizes}
        with torch.no_grad():
            for b in batch_sizes:
                fn(*inputs[b])
        print(f"{model_name}: {method}/{runtime} ready in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        loaded.append((method, runtime, path, fn, acc, inputs, {b: [] for b in batch_sizes}))
    for _ in range(args.rounds):  # interleaved: each round times every variant once
        for *_, fn, _acc, inputs, samples in loaded:
            for b in batch_sizes:
                with torch.no_grad():
                    stats = time_callable(lambda fn=fn, x=inputs[b]: fn(*x), warmup_s=0.05, target_s=0.2, min_runs=10)
                samples[b].append(stats.p50)
    base = {b: statistics.median(next(s for m, r, *_x, s in loaded if m == "fp32" and r == "eager")[b]) for b in batch_sizes}
    for method, runtime, path, _fn, acc, _inputs, samples in loaded:
        p50 = {b: statistics.median(samples[b]) for b in batch_sizes}
        rows.append({
            "model": model_name, "method": method, "runtime": runtime,
            "recommended": method == "fp32" or fast_runtime(method) == runtime,
            "accuracy": acc, "size_bytes": path.stat().st_size,
            "p50_ms": {str(b): p50[b] for b in batch_sizes},
            "speedup": {str(b): base[b] / p50[b] for b in batch_sizes},
        })
    return rows


def print_table(rows: list[dict], batch_sizes: list[int]) -> None:
    head = f"{'model':17} {'method':12} {'runtime':8} {'acc %':>6} {'size KB':>8}"
    for b in batch_sizes:
        head += f" {'p50 b=' + str(b):>11} {'x fp32':>7}"
    print(head)
    print("-" * len(head))
    for r in rows:
        if "error" in r:
            print(f"{r['model']:17} {r['method']:12} {'-':8} unsupported: {r['error']}")
            continue
        mark = "*" if r["recommended"] and r["method"] != "fp32" else " "
        line = f"{r['model']:17} {r['method']:12} {r['runtime'] + mark:8} {r['accuracy'] * 100:6.2f} {r['size_bytes'] / 1024:8.0f}"
        for b in batch_sizes:
            line += f" {r['p50_ms'][str(b)]:9.3f}ms {r['speedup'][str(b)]:6.2f}x"
        print(line)
    print("* = the runtime torchslim records for that method's artifact")



BENCHMARK = Benchmark(name="quantize", description="fp32 eager vs every quantization method x runtime on the zoo models",
                      parameters=parameters, run=run)
