"""all-MiniLM-L6-v2: structured pruning of attention heads and FFN neurons, then distillation
from the unpruned model (output embedding only, or output + every layer's hidden states), on CPU.

For each ratio and each ``--importance`` (l1 by default; ``fisher``: the data-aware score of
``torchslim.prune``, over ``--scoring-batches`` batches of 64 training sentences) and ``--scope``:
``torchslim.prune(model, method="channel", ratio=r, importance=..., scope=...)`` (whole heads,
hidden size kept at 384; ``--iterations``/``--finetune-epochs``: iterative pruning with
output + hidden-state distillation between the rounds); test fidelity (mean cosine similarity to the unpruned model's
embeddings over the held-out test sentences of src/torchslim/hf/sentences.txt, padded to 128
tokens) before distillation; then, from the same pruned model, one ``torchslim.distill`` run
per variant:

- ``output``: 1 - cosine to the teacher's sentence embedding (``DistillConfig()``);
- ``hidden``: that plus the per-token hidden-state loss of all 6 layers
  (``DistillConfig(hidden_states=True)``).

Training data: the file's training split plus ``--corpus`` sentences of the built-in English
corpus (``text+corpus:FILE``; 0: none; ``all``: every one); validation (best epoch) and test are the file's and
are never trained on. Also recorded: heads and FFN width per layer, parameters, MACs (batch 1
x 128 tokens), seconds per run (rough: the machine is shared). Results are written after every
variant, so a killed run keeps what it measured.

Optional: ``--rounds N`` adds eager latency at batch 1 x 128 (interleaved rounds, median; rough
on a shared machine); ``--export`` checks the torch.export round trip of each distilled model.

Usage: python -m benchmarks run minilm_prune --variant KEY [--ratios 0.1,0.2,0.3,0.5]
       [--epochs 2] [--corpus 800|all] [--variants output,hidden|''] [--hidden-weight 1.0]
       [--importance l1,fisher] [--scope uniform|global] [--scoring-batches 4] [--threads 1] [--out FILE]
``--variants ''``: fidelity after pruning only. Writes the run under ``--variant KEY`` in
benchmarks/results/minilm_prune.json (or --out), next to the file's other runs (main, importance,
long, lr1e-4, ...); ``--table``: the table of a saved run, measuring nothing.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch

from benchmarks._harness import SENTENCES, Benchmark, Context, read_envelope

VARIANTS = ("output", "hidden")


def run(args: argparse.Namespace, ctx: Context) -> dict | None:
    if args.table:
        return print_saved(args.out, args.variant)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    import torchslim
    from torchslim.bench import count_macs, fidelity
    from torchslim.data._text import load_text
    from torchslim.hf import load_hf

    handle = load_hf(args.model)
    model = handle.model.eval()
    corpus = True if args.corpus == "all" else (int(args.corpus) if int(args.corpus) > 0 else False)
    data = load_text(f"{'text' if corpus is False else 'text+corpus'}:{SENTENCES}", SENTENCES, tokenizer=handle.hf.tokenizer,
                     seed=0, corpus=corpus)
    one = (data.test.input_ids[:1].clone(), data.test.attention_mask[:1].clone())
    layers = model.encoder.encoder.layer
    base = {"params": _params(model), "macs": count_macs(model, one),
            "heads_per_layer": [layer.attention.self.num_attention_heads for layer in layers],
            "ffn_per_layer": [layer.intermediate.dense.out_features for layer in layers]}
    result = {"model": f"{args.model} (all-MiniLM-L6-v2)" if args.model == "hf:minilm" else args.model,
              "sequence_length": int(one[0].shape[1]), "distill_epochs": args.epochs, "variants": args.variants,
              "hidden_weight": args.hidden_weight, "distill_lr": args.lr if args.lr is not None else 3e-4, "train_sentences": len(data.train), "val_sentences": len(data.val),
              "test_sentences": len(data.test), "corpus": data.extra.get("corpus", {"sentences": 0}),
              "importance": args.importance, "scope": args.scope, "scoring_batches": args.scoring_batches,
              "iterations": args.iterations, "finetune_epochs": args.finetune_epochs,
              "threads": args.threads, "unpruned": base, "rows": []}
    print(f"{len(data.train)} training ({result['corpus']['sentences']} from the corpus) / {len(data.val)} val / "
          f"{len(data.test)} test sentences, {args.threads} thread(s)", flush=True)
    models = {"unpruned": model}
    for ratio, importance in [(r, i) for r in args.ratios for i in args.importance]:
        started = time.perf_counter()
        pruned = torchslim.prune(model, _prune_options(ratio, importance, args), data=data, teacher=model)
        layers = pruned.encoder.encoder.layer
        row = {"ratio": ratio, "importance": importance, "prune_seconds_rough": time.perf_counter() - started,
               "heads_per_layer": [layer.attention.self.num_attention_heads for layer in layers],
               "ffn_per_layer": [layer.intermediate.dense.out_features for layer in layers],
               "params": _params(pruned), "macs": count_macs(pruned, one),
               "fidelity_before_kd": fidelity(pruned, model, data.test), "kd": {}}
        row["params_ratio"], row["macs_ratio"] = row["params"] / base["params"], row["macs"] / base["macs"]
        result["rows"].append(row)
        ctx.save(result)
        print(f"ratio {ratio:g} ({importance}): MACs x{row['macs_ratio']:.3f}, fidelity before KD {row['fidelity_before_kd']:.4f} "
              f"({time.perf_counter() - started:.0f}s)", flush=True)
        for variant in args.variants:
            row["kd"][variant] = _distill(pruned, model, data, variant, args, handle)
            models[f"ratio {ratio:g} {importance} {variant}"] = row["kd"][variant].pop("model")
            ctx.save(result)
    if args.rounds:
        _latency(result, models, one, args)
    _print_table(result)
    return result


def print_saved(path: Path, variant: str) -> None:
    """``--table``: the table of a saved run (a killed run's too); measures and saves nothing."""
    _print_table(read_envelope(path).results[variant])


def parameters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="hf:minilm")
    parser.add_argument("--ratios", default="0.1,0.2,0.3,0.5", type=lambda s: [float(r) for r in s.split(",")])
    parser.add_argument("--epochs", type=int, default=2, help="distillation epochs")
    parser.add_argument("--corpus", default="800", help="built-in corpus sentences added to training (0: none, all: every one)")
    parser.add_argument("--variants", default="output,hidden", type=_distill_variants,
                        help="distillation runs per pruned model ('': none, fidelity after pruning only)")
    parser.add_argument("--importance", default="l1", type=lambda s: s.split(","),
                        help="channel importance(s): l1, l2, fisher (comma-separated: one pruned model each)")
    parser.add_argument("--scope", default="uniform", choices=("uniform", "global"),
                        help="uniform: every layer loses the same share; global: one ranking over all layers")
    parser.add_argument("--scoring-batches", type=int, default=4, help="batches of 64 that score fisher importance")
    parser.add_argument("--iterations", type=int, default=1, help="prune rounds (iterative pruning)")
    parser.add_argument("--finetune-epochs", type=int, default=0,
                        help="distillation epochs (output + hidden states) after each prune round")
    parser.add_argument("--hidden-weight", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=None, help="distillation peak learning rate (default: distill's, 3e-4)")
    parser.add_argument("--finetune-lr", type=float, default=3e-4, help="learning rate of those epochs (distill's default)")
    parser.add_argument("--rounds", type=int, default=0, help="interleaved latency rounds (0: no latency)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per model per round")
    parser.add_argument("--export", action="store_true", help="check each distilled model's torch.export round trip")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--table", action="store_true",
                        help="print the table of the run saved under --variant in --out, run nothing")


def _distill_variants(text: str) -> list[str]:
    variants = [v for v in text.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {unknown}; choose from {', '.join(VARIANTS)}")
    return variants


def _prune_options(ratio: float, importance: str, args) -> dict:
    options = {"method": "channel", "ratio": ratio, "importance": importance, "taylor_batches": args.scoring_batches,
               "iterations": args.iterations, "scope": args.scope}
    if args.finetune_epochs:
        options.update(finetune_epochs=args.finetune_epochs, finetune_hidden_states=True, finetune_lr=args.finetune_lr)
    return options


def _distill(pruned, model, data, variant: str, args, handle) -> dict:
    import torchslim
    from torchslim.bench import fidelity
    from torchslim.distill import DistillConfig

    started = time.perf_counter()
    student = copy.deepcopy(pruned)
    history: list[str] = []
    options = {"hidden_states": True, "hidden_weight": args.hidden_weight} if variant == "hidden" else {}
    if args.lr is not None:
        options["lr"] = args.lr
    def log(message: str) -> None:  # printed as it comes: a killed long run leaves its epochs in the log
        history.append(message)
        print(f"    {message}", flush=True)

    torchslim.distill(student, model, data, DistillConfig(epochs=args.epochs, **options), log=log)
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
            record["p50_ms_rough"] = p50[f"ratio {row['ratio']:g} {row.get('importance', 'l1')} {variant}"]


def _print_table(result: dict) -> None:
    """The results as the markdown table docs/transformers.md shows."""
    variants = result["variants"]
    names = {"output": "after output-only KD", "hidden": "after output + hidden-state KD"}
    header = ["ratio", "importance", "heads", "FFN neurons", "params", "MACs (fewer)", "fidelity pruned"]
    _table_line(header + [names[v] for v in variants])
    _table_line(["---"] * (len(header) + len(variants)))
    base = result["unpruned"]
    _table_line(["0", "-", sum(base.get("heads_per_layer", [0])), sum(base.get("ffn_per_layer", [0])), f"{base['params']:,}",
                 "1.00", "1.0000"] + ["-" for _ in variants])
    for row in sorted(result["rows"], key=lambda r: (r["ratio"], r.get("importance", "l1"))):
        importance = row.get("importance", "l1") + (" (global)" if result.get("scope") == "global" else "")
        _table_line([f"{row['ratio']:g}", importance, _per_layer(row["heads_per_layer"]), _per_layer(row["ffn_per_layer"]),
                     f"{row['params']:,}", f"{row['macs_ratio']:.2f} ({1 / row['macs_ratio']:.2f}x)",
                     f"{row['fidelity_before_kd']:.4f}"]
                    + [f"{row['kd'][v]['fidelity']:.4f}" if v in row["kd"] else "-" for v in variants])
    print(f"{result['train_sentences']} training sentences ({result['corpus']['sentences']} from the corpus), "
          f"{result['distill_epochs']} epochs; results saved after every run")


def _table_line(cells: list) -> None:
    print("| " + " | ".join(map(str, cells)) + " |")


def _per_layer(values: list[int]) -> str:
    """The total of a per-layer count, with the layers' values when they differ (global scope)."""
    return f"{sum(values)}" if len(set(values)) == 1 else f"{sum(values)} ({'/'.join(map(str, values))})"


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



BENCHMARK = Benchmark(name="minilm_prune",
                      description="all-MiniLM-L6-v2: head/FFN pruning, then distillation (one file, one key per run)",
                      parameters=parameters, run=run, variants=True)
