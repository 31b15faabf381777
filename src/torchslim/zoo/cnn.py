from __future__ import annotations

import torch.nn as nn

from torchslim.zoo._base import ZooModel


def _conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class DigitsCNN(ZooModel):
    """Three conv-BN-ReLU blocks and a two-layer head; ~0.2M parameters."""

    def __init__(self, num_classes: int = 10, input_shape: tuple[int, ...] = (1, 8, 8)) -> None:
        super().__init__()
        self.input_shape = tuple(input_shape)
        c, h, w = self.input_shape
        self.features = nn.Sequential(
            _conv_bn(c, 32),
            _conv_bn(32, 64),
            nn.MaxPool2d(2),
            _conv_bn(64, 128),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(0.2),
            nn.Linear(128 * (h // 4) * (w // 4), 128),
            nn.ReLU(inplace=True),
            nn.Linear(128, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))
