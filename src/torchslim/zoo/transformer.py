from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from torchslim.zoo._base import ZooModel


class SelfAttention(nn.Module):
    """Multi-head self-attention with separate q/k/v projections (prunable and exportable,
    unlike nn.MultiheadAttention's fused fast path)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x):
        b, t, _ = x.shape
        # The head width is derived from the q projection so that pruning heads stays consistent.
        q, k, v = (p(x).reshape(b, t, self.heads, -1).transpose(1, 2) for p in (self.q, self.k, self.v))
        y = F.scaled_dot_product_attention(q, k, v)
        return self.out(y.transpose(1, 2).reshape(b, t, -1))


class EncoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int, ffn: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn), nn.GELU(), nn.Linear(ffn, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        x = x + self.drop(self.attn(self.norm1(x)))
        return x + self.drop(self.ffn(self.norm2(x)))


class TinyTransformer(ZooModel):
    """Pre-norm encoder classifier: each image row is one token (8 tokens of 8 pixels)."""

    def __init__(self, num_classes: int = 10, input_shape: tuple[int, ...] = (1, 8, 8), dim: int = 64, depth: int = 2, heads: int = 4, ffn: int = 128) -> None:
        super().__init__()
        self.input_shape = tuple(input_shape)
        c, h, w = self.input_shape
        self.embed = nn.Linear(c * w, dim)
        self.pos = nn.Parameter(torch.zeros(1, h, dim))
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.layers = nn.Sequential(*[EncoderLayer(dim, heads, ffn) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        b, c, h, w = x.shape
        tokens = x.permute(0, 2, 1, 3).reshape(b, h, c * w)
        z = self.layers(self.embed(tokens) + self.pos)
        return self.head(self.norm(z).mean(dim=1))
