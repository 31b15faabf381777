"""A depthwise-separable CNN with squeeze-and-excitation and residual adds, for the 8x8 digits.

Pass it as ``torchslim optimize --model examples/dscnn_se.py:factory --data digits``: with no
``--weights`` torchslim trains it first. MobileNet-style blocks as users write them: a
depthwise 3x3 convolution (``groups=channels``), a pointwise 1x1 convolution, BatchNorm,
Hardswish, a squeeze-excite gate that multiplies the features by a per-channel sigmoid, and a
residual add where the shapes allow it.
"""

from __future__ import annotations

import torch
import torch.nn as nn


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, channels // reduction, 1)
        self.expand = nn.Conv2d(channels // reduction, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.expand(torch.relu(self.reduce(self.pool(x)))))
        return x * gate


class SeparableBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(c_in, c_in, 3, stride=stride, padding=1, groups=c_in, bias=False)
        self.bn1 = nn.BatchNorm2d(c_in)
        self.pointwise = nn.Conv2d(c_in, c_out, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.se = SqueezeExcite(c_out)
        self.act = nn.Hardswish()
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.bn1(self.depthwise(x)))
        y = self.se(self.bn2(self.pointwise(y)))
        return self.act(x + y) if self.residual else self.act(y)


class DSCNN(nn.Module):
    # (width, stride) per block: 8x8 -> 4x4 -> 2x2; the stride-1 blocks of equal width add a residual.
    BLOCKS = ((32, 1), (64, 2), (64, 1), (128, 2), (128, 1))

    def __init__(self, num_classes: int = 10, channels: int = 1, stem: int = 32) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(channels, stem, 3, padding=1, bias=False), nn.BatchNorm2d(stem),
                                  nn.Hardswish())
        blocks, c = [], stem
        for width, stride in self.BLOCKS:
            blocks.append(SeparableBlock(c, width, stride))
            c = width
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.blocks(self.stem(x))).flatten(1))


def factory() -> nn.Module:
    return DSCNN()
