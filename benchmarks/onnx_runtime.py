"""Deployment runtimes side by side: eager fp32 vs ONNX Runtime (fp32, dynamic int8, static
QDQ int8) vs AOTInductor, on three zoo models at batch 1 and 32.

Everything runs in one process and is timed interleaved: each round times every variant once
(in a rotated order), and the table shows the median of the rounds' p50s, so a noisy
neighbour slows all variants alike instead of whichever ran during the spike.

    python -m benchmarks run onnx_runtime [--models digits-cnn,resnet-mini,tiny-transformer] [--rounds 5] [--threads N]

Prints a table and writes benchmarks/results/onnx_runtime.json.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks._harness import Benchmark, Context, load_zoo
from torchslim.artifacts import load, save_exported
from torchslim.bench import accuracy, set_threads, time_callable
from torchslim.export import export, onnx_param_count, quantize_onnx

BATCH_SIZES = (1, 32)


def build_variants(name: str, folder: Path) -> tuple[dict, object]:
    """variant -> (callable, artifact path, build seconds)."""
    handle, bundle = load_zoo(name)
    model = handle.model.eval()
    example = bundle.example_inputs(2)
    variants = {}
    start = time.perf_counter()
    eager_file = save_exported(model, folder / name / "eager.pt2", example)
    variants["eager fp32"] = (model, eager_file, time.perf_counter() - start)
    start = time.perf_counter()
    fp32 = export(model, folder / name / "fp32.onnx", example, {"format": "onnx"})
    variants["ORT fp32"] = (load(fp32), fp32, time.perf_counter() - start)
    for method in ("dynamic", "static"):
        start = time.perf_counter()
        path = quantize_onnx(fp32, folder / name / f"{method}.onnx", method, inputs=bundle.example_inputs(16),
                             data=bundle if method == "static" else None)
        variants[f"ORT {method} int8"] = (load(path), path, time.perf_counter() - start)
    start = time.perf_counter()
    package = export(model, folder / name / "model.pt2", example, {"format": "pt2"})
    variants["AOTI fp32"] = (load(package), package, time.perf_counter() - start)
    return variants, bundle


def measure(name: str, folder: Path, rounds: int) -> list[dict]:
    variants, bundle = build_variants(name, folder)
    rows = {label: {"model": name, "variant": label, "size_bytes": path.stat().st_size, "build_s": round(build_s, 1),
                    "accuracy": accuracy(fn, bundle.test), "p50_ms": {str(b): [] for b in BATCH_SIZES},
                    "params": onnx_param_count(path) if path.suffix == ".onnx" else None}
            for label, (fn, path, build_s) in variants.items()}
    inputs = {b: bundle.example_inputs(b) for b in BATCH_SIZES}
    labels = list(variants)
    for r in range(rounds):
        order = labels[r % len(labels):] + labels[: r % len(labels)]
        for label in order:
            fn = variants[label][0]
            for b in BATCH_SIZES:
                with torch.no_grad():
                    stats = time_callable(lambda fn=fn, x=inputs[b]: fn(*x), target_s=0.3, min_runs=15, max_runs=200)
                rows[label]["p50_ms"][str(b)].append(stats.p50)
    result = []
    for row in rows.values():
        row["p50_ms_rounds"] = row.pop("p50_ms")
        row["p50_ms"] = {b: statistics.median(v) for b, v in row["p50_ms_rounds"].items()}
        result.append(row)
    eager = rows["eager fp32"]["p50_ms"]
    for row in result:
        row["speedup_vs_eager"] = {b: eager[b] / row["p50_ms"][b] for b in eager}
    return result


def render(rows: list[dict]) -> str:
    header = (f"{'model':<17} {'variant':<17} {'size KiB':>9} {'acc %':>6} {'b=1 p50 ms':>11} {'x eager':>7} "
              f"{'b=32 p50 ms':>12} {'x eager':>7} {'build s':>8}")
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(f"{r['model']:<17} {r['variant']:<17} {r['size_bytes'] / 1024:>9.1f} {r['accuracy'] * 100:>6.2f} "
                     f"{r['p50_ms']['1']:>11.3f} {r['speedup_vs_eager']['1']:>7.2f} {r['p50_ms']['32']:>12.3f} "
                     f"{r['speedup_vs_eager']['32']:>7.2f} {r['build_s']:>8.1f}")
    return "\n".join(lines)


def parameters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", default="digits-cnn,resnet-mini,tiny-transformer")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None,
                        help="intra-op threads for every variant (default: all cores). On a machine shared with "
                             "other jobs, 1 avoids OpenMP stalls where a descheduled worker holds up a whole op.")


def run(args: argparse.Namespace, ctx: Context) -> dict:
    threads = set_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory(prefix="torchslim-bench-onnx-") as tmp:
        for name in args.models.split(","):
            rows += measure(name.strip(), Path(tmp), args.rounds)
    table = render(rows)
    print(table)
    print(f"\nthreads {threads}")
    return {"threads": threads,
            "method": f"median over {args.rounds} interleaved rounds of time_callable p50 (target 0.3 s each)",
            "rows": rows, "table": table}


BENCHMARK = Benchmark(
    name="onnx_runtime",
    description="eager fp32 vs ONNX Runtime (fp32, dynamic and static int8) vs AOTInductor on zoo models",
    parameters=parameters, run=run)
