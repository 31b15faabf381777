"""Benchmark: one training step of resnet-mini on digits through the real engine (``fit``).

    python -m benchmarks run train_step [--epochs 2] [--rounds 2]

Part 1, precision, one process, 1 thread: fp32 eager vs bf16 autocast vs bf16 + torch.compile.
Part 2, DDP scaling: 1 process vs 2 DDP processes (torchrun, gloo, 1 thread each), the same
per-process batch (weak scaling); efficiency = throughput(2) / (2 x throughput(1)).

A step is timed between consecutive ``on_step_end`` hooks (data, forward, backward, optimizer,
scheduler: everything the loop does per step). The first epoch is warm-up (compilation,
allocator) and is discarded; the rest give the median. Variants are interleaved over rounds so
a noisy neighbour hurts all of them alike. Prints a table and writes results/train_step.json.
The DDP processes run this module (``python -m benchmarks.train_step --ddp-worker OUT``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._harness import ROOT, Benchmark, Context

BATCH = 64


class StepTimer:
    def __init__(self, warmup_steps: int) -> None:
        self.warmup_steps, self.times, self.last = warmup_steps, [], None

    def on_step_end(self, state) -> None:
        now = time.perf_counter()
        if self.last is not None and state.step > self.warmup_steps:
            self.times.append(now - self.last)
        self.last = now


def time_fit(precision: str, compile: bool, epochs: int) -> list[float]:
    import torch

    from torchslim import zoo
    from torchslim.data import load_data
    from torchslim.train import TrainConfig, fit

    data = load_data("digits")
    torch.manual_seed(0)
    model = zoo.create_model("resnet-mini")
    steps_per_epoch = -(-len(data.train) // BATCH)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        steps_per_epoch = -(-len(data.train) // (BATCH * int(os.environ["WORLD_SIZE"])))
    timer = StepTimer(warmup_steps=steps_per_epoch)  # the whole first epoch is warm-up
    fit(model, data, TrainConfig(epochs=epochs, batch_size=BATCH, precision=precision, compile=compile), hooks=[timer])
    return timer.times


def ddp_worker(out: str, epochs: int) -> None:
    import torch

    torch.set_num_threads(1)
    times = time_fit("fp32", False, epochs)
    if int(os.environ.get("RANK", "0")) == 0:
        Path(out).write_text(json.dumps({"median_step_s": statistics.median(times), "steps": len(times)}))


def run_ddp(nproc: int, epochs: int) -> float:
    with tempfile.TemporaryDirectory(prefix="train-step-ddp-") as tmp:
        out = Path(tmp) / f"ddp{nproc}.json"
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "benchmarks.train_step", "--ddp-worker", str(out), "--epochs", str(epochs)]
        subprocess.run(cmd, env=env, cwd=ROOT, check=True, capture_output=True)
        return json.loads(out.read_text())["median_step_s"]


def parameters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)


def run(args: argparse.Namespace, ctx: Context) -> dict:
    import torch

    torch.set_num_threads(1)
    variants = {"fp32 eager": ("fp32", False), "bf16 autocast": ("bf16", False), "bf16 + compile": ("bf16", True)}
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(args.rounds):
        order = list(variants)[r % 3:] + list(variants)[: r % 3]
        for name in order:
            samples[name] += time_fit(*variants[name], args.epochs)
            print(f"round {r + 1}: {name} done", file=sys.stderr, flush=True)
    ddp = {}
    for r in range(args.rounds):
        for nproc in ((1, 2) if r % 2 == 0 else (2, 1)):
            ddp.setdefault(nproc, []).append(run_ddp(nproc, args.epochs))
            print(f"round {r + 1}: DDP x{nproc} done", file=sys.stderr, flush=True)

    median = {name: statistics.median(t) for name, t in samples.items()}
    base = median["fp32 eager"]
    ddp_step = {n: statistics.median(v) for n, v in ddp.items()}
    throughput = {n: BATCH * n / s for n, s in ddp_step.items()}
    efficiency = throughput[2] / (2 * throughput[1])
    load = os.getloadavg()[0]
    capability = torch.backends.cpu.get_cpu_capability()
    bf16_hardware = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())

    print(f"\nresnet-mini on digits, batch {BATCH}/process, torch {torch.__version__}, {os.cpu_count()} CPUs ({capability}, bf16 hardware: {bf16_hardware}), load avg {load:.1f}")
    print(f"{'variant':<28}{'median step ms':>16}{'samples/s':>12}{'vs fp32':>10}")
    for name, s in median.items():
        print(f"{name + ' (1 thread)':<28}{s * 1e3:>16.2f}{BATCH / s:>12.0f}{base / s:>9.2f}x")
    for n, s in ddp_step.items():
        print(f"{f'DDP {n} proc x 1 thread':<28}{s * 1e3:>16.2f}{throughput[n]:>12.0f}")
    print(f"DDP scaling efficiency (2 vs 1 process): {efficiency:.0%}")
    return {
        "model": "resnet-mini", "data": "digits", "batch_per_process": BATCH, "cpu_capability": capability,
        "bf16_hardware": bf16_hardware, "load_average_1min": load, "epochs": args.epochs, "rounds": args.rounds,
        "median_step_ms": {k: v * 1e3 for k, v in median.items()},
        "speedup_vs_fp32": {k: base / v for k, v in median.items()},
        "ddp_median_step_ms": {str(n): s * 1e3 for n, s in ddp_step.items()},
        "ddp_samples_per_s": {str(n): t for n, t in throughput.items()},
        "ddp_scaling_efficiency": efficiency,
    }


BENCHMARK = Benchmark(name="train_step",
                      description="one training step of resnet-mini on digits: fp32 vs bf16 vs bf16 + compile, 1 vs 2 DDP processes",
                      parameters=parameters, run=run)


if __name__ == "__main__":  # a DDP worker process (run_ddp), not an entry point: use python -m benchmarks
    worker = argparse.ArgumentParser()
    worker.add_argument("--ddp-worker", required=True)
    worker.add_argument("--epochs", type=int, default=2)
    worker_args = worker.parse_args()
    ddp_worker(worker_args.ddp_worker, worker_args.epochs)
