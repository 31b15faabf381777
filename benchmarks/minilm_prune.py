"""all-MiniLM-L6-v2: structured pruning of attention heads and FFN neurons, then embedding
distillation from the unpruned model, on CPU.

For each ratio: ``torchslim.prune(model, method="channel", ratio=r)`` (L1 importance, whole
heads, hidden size kept at 384), then ``torchslim.distill`` (1 - cosine to the teacher's
embeddings) on the training sentences of src/torchslim/hf/sentences.txt, padded to 128
tokens as ``text:FILE`` gives them. Columns: heads and FFN width per layer, parameters, MACs
(batch 1 x 128), test fidelity (mean cosine similarity to the unpruned model over the held-out
sentences) before and after distillation, the torch.export round trip's fidelity to eager, and
eager latency at batch 1 x 128.

Latency: one process, interleaved rounds (every model in turn per round), the median of all
timed calls; warm-up calls first. Timing threads are fixed (default 1: the machine is shared).

Usage: PYTHONPATH=src HF_HUB_OFFLINE=1 python benchmarks/minilm_prune.py [--ratios 0.3,0.5]
       [--epochs 2] [--rounds 10] [--threads 1]
Writes benchmarks/results/minilm_prune.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SENTENCES = ROOT / "src" / "torchslim" / "hf" / "sentences.txt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratios", default="0.3,0.5")
    parser.add_argument("--epochs", type=int, default=2, help="distillation epochs (the quick recipe's)")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved latency rounds")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per model per round")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "minilm_prune.json"))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)  # pruning and distillation use every core; only the timing is pinned

    import torchslim
    from torchslim.artifacts import load, save_exported
    from torchslim.bench import count_macs, fidelity
    from torchslim.data._text import load_text
    from torchslim.distill import DistillConfig
    from torchslim.hf import load_hf

    handle = load_hf("hf:minilm")
    model = handle.model.eval()
    data = load_text(f"text:{SENTENCES}", SENTENCES, tokenizer=handle.hf.tokenizer, seed=0)
    one = (data.test.input_ids[:1].clone(), data.test.attention_mask[:1].clone())
    print(f"{len(data.train)} training / {len(data.test)} test sentences, 128 tokens, {args.threads} thread(s)", flush=True)

    models, rows = {"unpruned": model}, []
    for ratio in [float(r) for r in args.ratios.split(",")]:
        started = time.perf_counter()
        pruned = torchslim.prune(model, {"method": "channel", "ratio": ratio}, data=data)
        before = fidelity(pruned, model, data.test)
        torchslim.distill(pruned, model, data, DistillConfig(epochs=args.epochs))
        after = fidelity(pruned, model, data.test)
        with tempfile.TemporaryDirectory() as tmp:
            path = save_exported(pruned, Path(tmp) / "pruned.pt2", data.example_inputs(2), task="embedding",
                                 input_names=handle.hf.input_names)
            exported = fidelity(load(path), pruned, data.test)
        layers = pruned.encoder.encoder.layer
        row = {"ratio": ratio, "heads_per_layer": [layer.attention.self.num_attention_heads for layer in layers],
               "ffn_per_layer": [layer.intermediate.dense.out_features for layer in layers],
               "params": _params(pruned), "macs": count_macs(pruned, one),
               "fidelity_before_kd": before, "fidelity_after_kd": after, "export_fidelity_to_eager": exported,
               "seconds": time.perf_counter() - started}
        rows.append(row)
        models[f"ratio {ratio:g}"] = pruned
        print(f"ratio {ratio:g}: fidelity {before:.4f} -> {after:.4f} after {args.epochs} KD epochs "
              f"({row['seconds']:.0f}s), export {exported:.6f}", flush=True)

    torch.set_num_threads(args.threads)
    p50 = _interleaved_latency(models, one, args.rounds, args.repeats)
    base = {"params": _params(model), "macs": count_macs(model, one), "p50_ms": p50["unpruned"]}
    print(f"{'model':12s} {'heads':>6s} {'params':>11s} {'MACs':>8s} {'fid before':>10s} {'fid after':>9s} "
          f"{'p50 ms':>7s} {'speed-up':>8s}")
    print(f"{'unpruned':12s} {72:6d} {base['params']:11,d} {1.0:8.2f} {1.0:10.4f} {1.0:9.4f} {base['p50_ms']:7.2f} {1.0:7.2f}x")
    for row in rows:
        name = f"ratio {row['ratio']:g}"
        row["p50_ms"] = p50[name]
        row["speedup_vs_unpruned"] = base["p50_ms"] / p50[name]
        row["params_ratio"], row["macs_ratio"] = row["params"] / base["params"], row["macs"] / base["macs"]
        print(f"{name:12s} {sum(row['heads_per_layer']):6d} {row['params']:11,d} {row['macs_ratio']:8.2f} "
              f"{row['fidelity_before_kd']:10.4f} {row['fidelity_after_kd']:9.4f} {p50[name]:7.2f} "
              f"{row['speedup_vs_unpruned']:7.2f}x")
    result = {"benchmark": "minilm_prune", "model": "hf:minilm (all-MiniLM-L6-v2)", "sequence_length": 128,
              "distill_epochs": args.epochs, "rounds": args.rounds, "repeats": args.repeats, "threads": args.threads,
              "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
              "unpruned": base, "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"saved {out}")


@torch.no_grad()
def _interleaved_latency(models: dict, inputs: tuple, rounds: int, repeats: int) -> dict[str, float]:
    for fn in models.values():  # warm-up: allocate, fill caches
        for _ in range(3):
            fn(*inputs)
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, fn in models.items():
            for _ in range(repeats):
                t0 = time.perf_counter()
                fn(*inputs)
                times[name].append((time.perf_counter() - t0) * 1e3)
    return {name: statistics.median(v) for name, v in times.items()}


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


if __name__ == "__main__":
    main()
