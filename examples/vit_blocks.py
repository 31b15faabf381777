"""A small vision transformer built only from PyTorch's own modules, for the 8x8 digits.

Pass it as ``torchslim optimize --model examples/vit_blocks.py:factory --data digits``: with
no ``--weights`` torchslim trains it first. It is the kind of model users bring (timm- or
torchvision-style blocks), not a zoo model: a patch-embedding convolution, a class token and
positional embeddings as ``nn.Parameter``\\ s read in ``forward``, ``nn.TransformerEncoder``
(whose layers use ``nn.MultiheadAttention``), ``nn.LayerNorm`` and a linear head.
"""

from __future__ import annotations

import torch
import torch.nn as nn


class ViT(nn.Module):
    def __init__(self, num_classes: int = 10, image_size: int = 8, patch: int = 2, channels: int = 1,
                 dim: int = 64, depth: int = 2, heads: int = 4, mlp: int = 128, dropout: float = 0.1) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(channels, dim, kernel_size=patch, stride=patch)
        tokens = (image_size // patch) ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, tokens + 1, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=mlp, dropout=dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        # enable_nested_tensor is off: it only applies to post-norm layers and warns otherwise.
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)  # (N, tokens, dim)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + self.pos_embed
        x = self.encoder(x)
        return self.head(self.norm(x[:, 0]))


def factory() -> nn.Module:
    return ViT()
