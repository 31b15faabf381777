"""Benchmark: the whole `torchslim optimize` search on one model and recipe.

Prints each candidate's wall time (steps + save + measure), its measured speed-up and size
ratio against the baseline, and the chosen best; saves the numbers in
benchmarks/results/optimize_search.json (another recipe: pass ``--out`` to keep both).

    python -m benchmarks run optimize_search                     # digits-cnn, default recipe
    python -m benchmarks run optimize_search --recipe quick --model digits-mlp
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from benchmarks._harness import Benchmark, Context
from torchslim.pipeline import RunOptions, optimize


def parameters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="digits-cnn")
    parser.add_argument("--data", default="digits")
    parser.add_argument("--recipe", default="default")
    parser.add_argument("--device", default="auto")


def run(args: argparse.Namespace, ctx: Context) -> dict:
    with tempfile.TemporaryDirectory(prefix="torchslim-bench-optimize-") as tmp:
        started = time.perf_counter()
        report = optimize(args.model, args.data, args.recipe, run=RunOptions(device=args.device, out=Path(tmp) / "run"))
        total = time.perf_counter() - started
    base = report.baseline.metrics
    rows = []
    for c in report.candidates:
        m = c.metrics
        rows.append({
            "candidate": c.name, "status": c.status, "seconds": c.duration_s,
            "accuracy": m.accuracy if m else None,
            "speedup_b1": base.latency_ms["1"].p50 / m.latency_ms["1"].p50 if m and "1" in m.latency_ms else None,
            "size_ratio": base.size_bytes / m.size_bytes if m else None,
            "runtime": m.runtime if m else None, "within_budget": c.within_budget, "error": c.error,
        })
    def fmt(value, spec: str) -> str:
        return format(value, spec) if value is not None else "-"

    print(f"{'candidate':34} {'status':8} {'s':>6} {'acc %':>7} {'x b=1':>6} {'x size':>7}  runtime")
    for r in rows:
        acc = fmt(r["accuracy"] * 100 if r["accuracy"] is not None else None, ".2f")
        print(f"{r['candidate']:34} {r['status']:8} {fmt(r['seconds'], '.1f'):>6} {acc:>7} "
              f"{fmt(r['speedup_b1'], '.2f'):>6} {fmt(r['size_ratio'], '.2f'):>7}  {r['runtime'] or (r['error'] or '')[:50]}")
    print(f"baseline accuracy {base.accuracy * 100:.2f}%, p50 b=1 {base.latency_ms['1'].p50:.3f} ms; "
          f"best: {report.best}; total {total:.0f} s")
    return {"model": args.model, "recipe": args.recipe, "report_environment": report.environment,
            "total_s": total, "best": report.best, "candidates": rows}


BENCHMARK = Benchmark(name="optimize_search",
                      description="the whole `torchslim optimize` search on one model and recipe, candidate by candidate",
                      parameters=parameters, run=run)
