"""Pruning on resnet-mini (digits), CPU, eager PyTorch.

(b) Structured channel pruning (Torch-Pruning, L1 importance, uniform ratio, BN
    recalibrated) at 30 / 50 / 70 % of channels, each with three recoveries:
        none   prune + BN recalibration, no training
        ce     2 rounds x EPOCHS fine-tuning epochs with plain cross-entropy
        kd     the same rounds distilled from the unpruned model (T=4, alpha=0.7)
    Columns: params, MACs (batch 1), batch-1 and batch-32 p50 latency, test accuracy, the
    wall-clock speed-up and its ratio to the MAC reduction (goal: >= 0.7), and the .pt2 size.
    Goal: >= 2x faster at <= 1 point of accuracy lost.

(c) Unstructured L1 pruning (global, 50 % and 90 %): latency next to dense, and file sizes
    (dense .pt2 vs the sparse .tslim container). The zeros are still multiplied by dense
    kernels, so no speed-up is expected; the table shows what was measured.

Latency: one process, interleaved rounds (every variant at every batch size per round), p50 of
each round's timed runs, then the median over rounds. Threads are fixed (default 1, because
the machine is shared; --threads to change). Accuracy is on the held-out test split.

Usage: python -m benchmarks run prune [--epochs 3] [--rounds 5] [--threads 1]
Writes benchmarks/results/prune.json.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks._harness import Benchmark, Context, load_zoo

RATIOS = (0.3, 0.5, 0.7)
BATCH_SIZES = (1, 32)


def parameters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs per round (2 rounds)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", default="resnet-mini")


def run(args: argparse.Namespace, ctx: Context) -> dict:
    torch.set_num_threads(args.threads)

    from torchslim.artifacts import save_exported
    from torchslim.bench import accuracy, count_macs, count_params
    from torchslim.prune import (
        ChannelPruneConfig,
        GlobalPruneConfig,
        prune,
        zero_fraction,
    )

    started = time.time()
    handle, data = load_zoo(args.model)
    dense = handle.model.eval()
    example = data.example_inputs(2)
    variants: dict[str, torch.nn.Module] = {"dense": dense}
    info: dict[str, dict] = {"dense": {"part": "base", "ratio": 0.0, "recovery": "-"}}
    for ratio in RATIOS:
        for recovery in ("none", "ce", "kd"):
            epochs = 0 if recovery == "none" else args.epochs
            config = ChannelPruneConfig(ratio=ratio, iterations=2 if epochs else 1, finetune_epochs=epochs)
            t0 = time.time()
            model = prune(dense, config, data=data, teacher=dense if recovery == "kd" else None, seed=0)
            name = f"channel {ratio:.0%} {recovery}"
            variants[name] = model
            info[name] = {"part": "b", "ratio": ratio, "recovery": recovery, "prune_s": round(time.time() - t0, 1)}
            print(f"{name}: pruned in {time.time() - t0:.0f} s, test accuracy {accuracy(model, data.test):.4f}", flush=True)
    for ratio in (0.5, 0.9):
        name = f"unstructured {ratio:.0%}"
        variants[name] = prune(dense, GlobalPruneConfig(ratio=ratio))
        info[name] = {"part": "c", "ratio": ratio, "recovery": "none", "zero_fraction": zero_fraction(variants[name])}

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in variants.items():
            pt2 = save_exported(model, Path(tmp) / "m.pt2", example)
            row = dict(info[name])
            row.update(
                accuracy=accuracy(model, data.test),
                params=count_params(model),
                macs=count_macs(model, tuple(t[:1] for t in example)),
                pt2_bytes=pt2.stat().st_size,
            )
            if row["part"] == "c":
                from torchslim.share import save_tslim

                row["sparse_bytes"] = save_tslim(model, Path(tmp) / "m.tslim", example_inputs=example).stat().st_size
            rows[name] = row
    latency = _interleaved_latency(variants, data, args.rounds)
    for name, row in rows.items():
        row["latency_ms"] = latency[name]
    return _print_and_save(rows, args, time.time() - started)


def _interleaved_latency(variants: dict, data, rounds: int) -> dict[str, dict[str, float]]:
    from torchslim.bench import time_callable

    inputs = {b: data.example_inputs(b) for b in BATCH_SIZES}
    samples: dict[str, dict[int, list[float]]] = {n: {b: [] for b in BATCH_SIZES} for n in variants}
    for _ in range(rounds):
        for name, model in variants.items():
            for b in BATCH_SIZES:
                with torch.inference_mode():
                    stats = time_callable(lambda m=model, x=inputs[b]: m(*x), warmup_s=0.1, target_s=0.3)
                samples[name][b].append(stats.p50)
    return {n: {str(b): statistics.median(v) for b, v in per.items()} for n, per in samples.items()}


def _print_and_save(rows: dict, args, elapsed: float) -> dict:
    base = rows["dense"]
    header = (f"{'variant':<22}{'params':>9}{'MACs':>12}{'b1 ms':>8}{'b32 ms':>8}{'acc %':>7}{'d pts':>7}"
              f"{'speed b1':>9}{'speed b32':>10}{'MAC red':>8}{'eff b1':>7}{'eff b32':>8}{'.pt2 KB':>8}")
    lines = [f"{args.model} on digits, eager CPU, {args.threads} thread(s), {args.rounds} interleaved rounds, "
             f"fine-tuning {args.epochs} epochs x 2 rounds", header, "-" * len(header)]
    for name, r in rows.items():
        b1, b32 = r["latency_ms"]["1"], r["latency_ms"]["32"]
        r["speedup_b1"] = base["latency_ms"]["1"] / b1
        r["speedup_b32"] = base["latency_ms"]["32"] / b32
        r["mac_reduction"] = base["macs"] / r["macs"] if r["macs"] else None
        r["speedup_over_mac_reduction_b1"] = r["speedup_b1"] / r["mac_reduction"] if r["mac_reduction"] else None
        r["speedup_over_mac_reduction_b32"] = r["speedup_b32"] / r["mac_reduction"] if r["mac_reduction"] else None
        r["accuracy_drop_pts"] = (base["accuracy"] - r["accuracy"]) * 100
        lines.append(
            f"{name:<22}{r['params']:>9,}{r['macs']:>12,}{b1:>8.3f}{b32:>8.3f}{r['accuracy'] * 100:>7.2f}"
            f"{r['accuracy_drop_pts']:>7.2f}{r['speedup_b1']:>8.2f}x{r['speedup_b32']:>9.2f}x"
            f"{r['mac_reduction']:>7.2f}x{r['speedup_over_mac_reduction_b1']:>7.2f}{r['speedup_over_mac_reduction_b32']:>8.2f}{r['pt2_bytes'] / 1024:>8.0f}"
        )
    lines.append("")
    lines.append("(c) unstructured: zeros stay in dense tensors -> same MACs, same kernels, no speed-up expected.")
    for name, r in rows.items():
        if r["part"] == "c":
            lines.append(
                f"  {name}: {r['zero_fraction']:.1%} zeros; latency b1 {r['speedup_b1']:.2f}x / b32 {r['speedup_b32']:.2f}x "
                f"of dense (1.00x = no gain); .pt2 {r['pt2_bytes']:,} B (dense {base['pt2_bytes']:,} B), "
                f"bitmask-sparse file {r['sparse_bytes']:,} B ({base['pt2_bytes'] / r['sparse_bytes']:.1f}x smaller)"
            )
    inflated = [n for n, r in rows.items() if r["part"] == "b" and r["speedup_over_mac_reduction_b1"] > 1.2]
    if inflated:
        lines.append(f"caution: batch-1 speed-ups beyond the MAC reduction ({len(inflated)} variants, eff b1 > 1.2) are not the "
                     "pruning's own work: the dense model's batch-1 latency is anomalously high in eager mode on this machine "
                     "(per-conv timing found identical-shape convs differing ~8x; cause not established); read eff b32.")
    goal = [n for n, r in rows.items() if r["part"] == "b" and r["speedup_b1"] >= 2 and r["accuracy_drop_pts"] <= 1.0]
    lines.append(f"goal (>= 2x faster at batch 1 with <= 1 point lost): {', '.join(goal) if goal else 'not met by any variant'}")
    text = "\n".join(lines)
    print(text)
    return {"model": args.model, "threads": args.threads, "rounds": args.rounds,
            "finetune_epochs_per_round": args.epochs, "elapsed_s": round(elapsed, 1), "rows": rows, "table": text}


BENCHMARK = Benchmark(name="prune", description="channel and unstructured pruning of resnet-mini on digits (eager CPU)",
                      parameters=parameters, run=run)
