from __future__ import annotations

import math

import torch.nn as nn

from torchslim.zoo._base import ZooModel


class MLP(ZooModel):
    """Fully connected classifier over the flattened image (LeNet-300-100 when hidden=(300, 100))."""

    def __init__(self, hidden: tuple[int, ...] = (256, 128), num_classes: int = 10, input_shape: tuple[int, ...] = (1, 8, 8)) -> None:
        super().__init__()
        self.input_shape = tuple(input_shape)
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(self.input_shape)
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)
