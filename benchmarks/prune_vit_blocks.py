"""Channel pruning of a small vision transformer built only from PyTorch's own blocks (digits).

    patch-embedding Conv2d (2x2 patches of the 8x8 image: 16 tokens) + class token +
    position parameter + nn.TransformerEncoder (2 layers, dim 64, 4 heads, norm first) +
    LayerNorm + Linear head

Trained from scratch, then channel-pruned at 50 % (uniform L1; whole heads of every
nn.MultiheadAttention go with as many residual channels, FFN neurons by their own ranking),
then fine-tuned by distillation from the unpruned model. Rows: params, MACs (batch 1), heads,
held-out test accuracy. Also the per-head-dimension variant (prune_heads: false).

Run: python -m benchmarks run prune_vit_blocks [--epochs 40] [--finetune 6]
Writes benchmarks/results/prune_vit_blocks.json.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn as nn

from benchmarks._harness import Benchmark, Context


class ViT(nn.Module):
    def __init__(self, dim: int = 64, heads: int = 4, layers: int = 2, patch: int = 2) -> None:
        super().__init__()
        self.patch = nn.Conv2d(1, dim, patch, stride=patch)
        tokens = (8 // patch) ** 2
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, tokens + 1, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.1, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, 10)

    def forward(self, x):
        t = self.patch(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(t.shape[0], -1, -1), t], 1) + self.pos
        return self.head(self.norm(self.encoder(t))[:, 0])


def _macs(model: nn.Module, example: tuple) -> int:
    """MACs of one forward, counted with autograd on: under no_grad an eval-mode
    nn.TransformerEncoderLayer takes PyTorch's fused fast path, whose work the FLOP counter
    does not see (torchslim.bench.count_macs counts under no_grad and misses the encoder)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.enable_grad(), FlopCounterMode(display=False) as counter:
        model(*example)
    return int(counter.get_total_flops() // 2)


def parameters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epochs", type=int, default=40, help="training epochs of the baseline")
    parser.add_argument("--finetune", type=int, default=6, help="distillation epochs after pruning")
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=2)


def run(args: argparse.Namespace, ctx: Context) -> dict:
    torch.set_num_threads(args.threads)

    from torchslim.bench import count_params
    from torchslim.data import accuracy, load_data
    from torchslim.prune import ChannelPruneConfig, prune
    from torchslim.train import TrainConfig, fit

    data = load_data("digits")
    example = data.example_inputs(1, split="train")
    torch.manual_seed(0)
    model = ViT()
    start = time.perf_counter()
    fit(model, data, TrainConfig(epochs=args.epochs, lr=3e-3, seed=0))
    train_s = time.perf_counter() - start
    model.eval()

    def row(name: str, m: nn.Module, seconds: float | None = None) -> dict:
        heads = [a.num_heads for a in m.modules() if isinstance(a, nn.MultiheadAttention)]
        return {"variant": name, "params": count_params(m), "macs": _macs(m, example), "heads": heads,
                "embed_dim": next(a.embed_dim for a in m.modules() if isinstance(a, nn.MultiheadAttention)),
                "test_accuracy": round(accuracy(m, data.test) * 100, 2), "seconds": seconds}

    rows = [row("baseline", model, round(train_s, 1))]
    for prune_heads in (True, False):
        label = "whole heads" if prune_heads else "head dims"
        config = ChannelPruneConfig(ratio=args.ratio, prune_heads=prune_heads)
        pruned = prune(model, config, data=data)
        rows.append(row(f"channel {args.ratio:g}, {label}, no fine-tuning", pruned))
        start = time.perf_counter()
        tuned = prune(model, config.model_copy(update={"finetune_epochs": args.finetune}), data=data, teacher=model)
        rows.append(row(f"channel {args.ratio:g}, {label}, {args.finetune} epochs distilled", tuned,
                        round(time.perf_counter() - start, 1)))
    for r in rows:
        print(f"{r['variant']:<42} params {r['params']:>7,}  MACs {r['macs'] or 0:>9,}  heads {r['heads']}  "
              f"dim {r['embed_dim']:>3}  test acc {r['test_accuracy']:.2f}%")
    return {"threads": args.threads, "epochs": args.epochs, "finetune_epochs": args.finetune, "rows": rows}


BENCHMARK = Benchmark(name="prune_vit_blocks",
                      description="channel pruning of a small ViT built from PyTorch's own blocks (digits), then distillation",
                      parameters=parameters, run=run)
