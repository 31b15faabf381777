"""The error static int8 adds, simulated in float: the one model of it that every estimate uses
(SmoothQuant's alpha search, the measured fallback's layer ranking, the sensitivity scan).

The scheme is the one the int8 kernels we ship actually run. X86InductorQuantizer (PT2E on
oneDNN) and ONNX Runtime's static QDQ quantization both quantize a layer's input per tensor to
uint8, affine (a zero point, over the observed range stretched to include 0), and its weight per
output channel to symmetric int8. The symmetric per-tensor activation model a former copy used
is wrong for these kernels: after a ReLU every activation is >= 0, so a symmetric grid wastes
half its levels on negatives that never occur, doubling the simulated step and overstating
the error of exactly the layers the kernels handle best. (OpenVINO's NNCF picks an unsigned
grid for such inputs too, so the same model describes it.)

Both round trips are bit for bit what a converted PT2E graph computes (a test compares them with
torchao's ``MinMaxObserver`` / ``PerChannelMinMaxObserver`` and the ``quantized_decomposed`` ops,
configured as X86InductorQuantizer configures them): weights use the full [-128, 127] with ``max|w| / 127.5``; ONNX Runtime's symmetric
weights stop at [-127, 127], a 0.4% coarser step, which is far inside what a ranking needs. One
approximation remains: the activation range is the batch's min/max, where X86InductorQuantizer's
histogram observer clips rare outliers a little, so this is an upper bound on its step.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.hooks import RemovableHandle


@torch.no_grad()
def fake_quantize_weight(w: torch.Tensor) -> torch.Tensor:
    """``w`` round-tripped through symmetric int8, one scale per output channel (dim 0): scale
    ``max|w| / 127.5`` over the full [-128, 127] grid, zero point 0 (X86InductorQuantizer's)."""
    w = w.detach().float()
    scale = (w.abs().flatten(1).amax(dim=1) / 127.5).clamp(min=1e-12)
    scale = scale.reshape(-1, *([1] * (w.dim() - 1)))
    return (w * (1.0 / scale)).round().clamp(-128, 127) * scale  # x * (1/scale): the kernels' rounding


@torch.no_grad()
def fake_quantize_activation(x: torch.Tensor) -> torch.Tensor:
    """``x`` round-tripped through uint8 with one affine scale and zero point over its range
    (stretched to include 0, so 0 is exact: padding and ReLU zeros stay zeros)."""
    lo, hi = x.min().clamp(max=0), x.max().clamp(min=0)
    scale = ((hi - lo) / 255).clamp(min=1e-12)
    zero = (-lo / scale).round()
    return ((x * (1.0 / scale)).round().add(zero).clamp(0, 255) - zero) * scale


@torch.no_grad()
def fake_int8_(layer: nn.Module) -> RemovableHandle:
    """Make ``layer`` (a Linear or Conv) behave as its int8 kernel would, in float: its weight is
    round-tripped in place and a forward pre-hook round-trips its input. A layer with an
    ``inv_scale`` (SmoothQuant's ``SmoothedLinear``, which multiplies its input by it first)
    has the scaled input quantized, as the kernel sees it. Returns the hook's handle; the weight
    change is permanent, so call this on a copy."""
    layer.weight.copy_(fake_quantize_weight(layer.weight).to(layer.weight.dtype))
    inv = getattr(layer, "inv_scale", None)

    def quantize_input(_module, args):
        x = args[0] if inv is None else args[0] * inv
        xq = fake_quantize_activation(x)
        return (xq if inv is None else xq / inv, *args[1:])

    return layer.register_forward_pre_hook(quantize_input)


@torch.no_grad()
def int8_output_error(x: torch.Tensor, weights: list[torch.Tensor]) -> float:
    """Relative squared error ``sum |int8(x) int8(W)^T - x W^T|^2 / sum |x W^T|^2`` of the Linear
    outputs ``x @ W.T`` for each ``W`` in ``weights`` (all reading the same input rows ``x``)."""
    x = x.float()
    xq = fake_quantize_activation(x)
    err = ref = 0.0
    for w in weights:
        w = w.detach().float().to(x.device)
        y = x @ w.T
        err += float((xq @ fake_quantize_weight(w).T - y).pow(2).sum())
        ref += float(y.pow(2).sum())
    return err / max(ref, 1e-12)
