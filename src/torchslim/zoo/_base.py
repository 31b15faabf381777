from __future__ import annotations

import torch
import torch.nn as nn


class ZooModel(nn.Module):
    """Zoo models remember their input shape so callers can build example inputs."""

    input_shape: tuple[int, ...]

    def example_inputs(self, batch_size: int = 2) -> tuple[torch.Tensor, ...]:
        param = next(self.parameters())
        return (torch.randn(batch_size, *self.input_shape, device=param.device),)
