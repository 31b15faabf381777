"""all-MiniLM-L6-v2: structured pruning of attention heads and FFN neurons, then distillation
from the unpruned model (output embedding only, or output + every layer's hidden states), on CPU.

For each ratio: ``torchslim.prune(model, method="channel", ratio=r)`` (L1 importance, whole
heads, hidden size kept at 384); test fidelity (mean cosine similarity to the unpruned model's
embeddings over the held-out test sentences of src/torchslim/hf/sentences.txt, padded to 128
tokens) before distillation; then, from the same pruned model, one ``torchslim.distill`` run
per variant:

- ``output``: 1 - cosine to the teacher's sentence embedding (``DistillConfig()``);
- ``hidden``: that plus the per-token hidden-state loss of all 6 layers
  (``DistillConfig(hidden_states=True)``).

Training data: the file's training split plus ``--corpus`` sentences of the built-in English
corpus (``text+corpus:FILE``; 0: none); validation (best epoch) and test are the file's and
are never trained on. Also recorded: heads and FFN width per layer, parameters, MACs (batch 1
x 128 tokens), seconds per run (rough: the machine is shared). Results are written after every
variant, so a killed run keeps what it measured.

Optional: ``--rounds N`` adds eager latency at batch 1 x 128 (interleaved rounds, median; rough
on a shared machine); ``--export`` checks the torch.export round trip of each distilled model.

Usage: PYTHONPATH=src HF_HUB_OFFLINE=1 python benchmarks/minilm_prune.py [--ratios 0.1,0.2,0.3,0.5]
       [--epochs 2] [--corpus 800] [--variants output,hidden] [--hidden-weight 1.0] [--threads 1]
Writes benchmarks/results/minilm_prune.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SENTENCES = ROOT / "src" / "torchslim" / "hf" / "sentences.txt"
VARIANTS = ("output", "hidden")


def main() -> None:
    args = _parse_args()
    if args.table:
        return print_saved(args.out)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    import torchslim
    from torchslim.bench import count_macs, fidelity
    from torchslim.data._text import load_text
    from torchslim.hf import load_hf

    handle = load_hf(args.model)
    model = handle.model.eval()
    data = load_text(f"{'text+corpus' if args.corpus > 0 else 'text'}:{SENTENCES}", SENTENCES, tokenizer=handle.hf.tokenizer, seed=0,
                     corpus=args.corpus if args.corpus > 0 else False)
    one = (data.test.input_ids[:1].clone(), data.test.attention_mask[:1].clone())
    layers = model.encoder.encoder.layer
    base = {"params": _params(model), "macs": count_macs(model, one),
            "heads_per_layer": [layer.attention.self.num_attention_heads for layer in layers],
            "ffn_per_layer": [layer.intermediate.dense.out_features for layer in layers]}
    result = {"benchmark": "minilm_prune", "model": f"{args.model} (all-MiniLM-L6-v2)" if args.model == "hf:minilm" else args.model,
              "sequence_length": int(one[0].shape[1]), "distill_epochs": args.epochs, "variants": args.variants,
              "hidden_weight": args.hidden_weight, "train_sentences": len(data.train), "val_sentences": len(data.val),
              "test_sentences": len(data.test), "corpus": data.extra.get("corpus", {"sentences": 0}),
              "threads": args.threads, "torch": torch.__version__, "python": platform.python_version(),
              "cpu": platform.processor() or platform.machine(), "unpruned": base, "rows": []}
    print(f"{len(data.train)} training ({result['corpus']['sentences']} from the corpus) / {len(data.val)} val / "
          f"{len(data.test)} test sentences, {args.threads} thread(s)", flush=True)
    models = {"unpruned": model}
    for ratio in args.ratios:
        started = time.perf_counter()
        pruned = torchslim.prune(model, {"method": "channel", "ratio": ratio}, data=data)
        layers = pruned.encoder.encoder.layer
        row = {"ratio": ratio, "heads_per_layer": [layer.attention.self.num_attention_heads for layer in layers],
               "ffn_per_layer": [layer.intermediate.dense.out_features for layer in layers],
               "params": _params(pruned), "macs": count_macs(pruned, one),
               "fidelity_before_kd": fidelity(pruned, model, data.test), "kd": {}}
        row["params_ratio"], row["macs_ratio"] = row["params"] / base["params"], row["macs"] / base["macs"]
        result["rows"].append(row)
        print(f"ratio {ratio:g}: MACs x{row['macs_ratio']:.3f}, fidelity before KD {row['fidelity_before_kd']:.4f} "
              f"({time.perf_counter() - started:.0f}s)", flush=True)
        for variant in args.variants:
            row["kd"][variant] = _distill(pruned, model, data, variant, args, handle)
            models[f"ratio {ratio:g} {variant}"] = row["kd"][variant].pop("model")
            _write(result, args.out)
    if args.rounds:
        _latency(result, models, one, args)
        _write(result, args.out)
    _print_table(result)


def print_saved(path: str) -> None:
    """``python benchmarks/minilm_prune.py --table``: the saved results' table (a killed run's too)."""
    _print_table(json.loads(Path(path).read_text()))


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="hf:minilm")
    parser.add_argument("--ratios", default="0.1,0.2,0.3,0.5", type=lambda s: [float(r) for r in s.split(",")])
    parser.add_argument("--epochs", type=int, default=2, help="distillation epochs")
    parser.add_argument("--corpus", type=int, default=800, help="built-in corpus sentences added to training (0: none)")
    parser.add_argument("--variants", default="output,hidden", type=lambda s: s.split(","))
    parser.add_argument("--hidden-weight", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=0, help="interleaved latency rounds (0: no latency)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per model per round")
    parser.add_argument("--export", action="store_true", help="check each distilled model's torch.export round trip")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "minilm_prune.json"))
    parser.add_argument("--table", action="store_true", help="print the table of the results saved in --out, run nothing")
    args = parser.parse_args()
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        parser.error(f"--variants: unknown {unknown}; choose from {', '.join(VARIANTS)}")
    return args


def _distill(pruned, model, data, variant: str, args, handle) -> dict:
    import torchslim
    from torchslim.bench import fidelity
    from torchslim.distill import DistillConfig

    started = time.perf_counter()
    student = copy.deepcopy(pruned)
    history: list[str] = []
    options = {"hidden_states": True, "hidden_weight": args.hidden_weight} if variant == "hidden" else {}
    torchslim.distill(student, model, data, DistillConfig(epochs=args.epochs, **options), log=history.append)
    record = {"fidelity": fidelity(student, model, data.test), "seconds_rough": time.perf_counter() - started,
              "val_fidelity_per_epoch": [float(line.split("val_fidelity ")[1].split()[0])
                                         for line in history if "val_fidelity " in line]}
    if args.export:
        record["export_fidelity_to_eager"] = _export_fidelity(student, data, handle)
    print(f"  {variant:6s} KD: fidelity {record['fidelity']:.4f}, val per epoch {record['val_fidelity_per_epoch']} "
          f"({record['seconds_rough']:.0f}s)", flush=True)
    return {**record, "model": student}


def _export_fidelity(student, data, handle) -> float:
    from torchslim.artifacts import load, save_exported
    from torchslim.bench import fidelity

    with tempfile.TemporaryDirectory() as tmp:
        path = save_exported(student, Path(tmp) / "pruned.pt2", data.example_inputs(2), task="embedding",
                             input_names=handle.hf.input_names)
        return fidelity(load(path), student, data.test)


def _latency(result: dict, models: dict, one: tuple, args) -> None:
    p50 = _interleaved_latency(models, one, args.rounds, args.repeats)
    result["latency_note"] = "rough: measured on a shared machine"
    result["unpruned"]["p50_ms_rough"] = p50["unpruned"]
    for row in result["rows"]:
        for variant, record in row["kd"].items():
            record["p50_ms_rough"] = p50[f"ratio {row['ratio']:g} {variant}"]


def _write(result: dict, out: str) -> None:
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")


def _print_table(result: dict) -> None:
    """The results as the markdown table docs/transformers.md shows."""
    variants = result["variants"]
    names = {"output": "after output-only KD", "hidden": "after output + hidden-state KD"}
    print("| ratio | heads | FFN / layer | params | MACs (fewer) | fidelity pruned | "
          + " | ".join(names[v] for v in variants) + " |")
    print("|---" * (6 + len(variants)) + "|")
    base = result["unpruned"]
    print(f"| 0 | {sum(base.get('heads_per_layer', [0]))} | {base.get('ffn_per_layer', ['?'])[0]} | {base['params']:,} | "
          "1.00 | 1.0000 | " + " | ".join("-" for _ in variants) + " |")
    for row in sorted(result["rows"], key=lambda r: r["ratio"]):
        after = " | ".join(f"{row['kd'][v]['fidelity']:.4f}" if v in row["kd"] else "-" for v in variants)
        print(f"| {row['ratio']:g} | {sum(row['heads_per_layer'])} | {row['ffn_per_layer'][0]} | {row['params']:,} | "
              f"{row['macs_ratio']:.2f} ({1 / row['macs_ratio']:.2f}x) | {row['fidelity_before_kd']:.4f} | {after} |")
    print(f"{result['train_sentences']} training sentences ({result['corpus']['sentences']} from the corpus), "
          f"{result['distill_epochs']} epochs; results saved after every run")


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
