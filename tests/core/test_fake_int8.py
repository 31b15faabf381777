"""The one model of static int8's error (``torchslim.core.fake_int8``), used by SmoothQuant's
alpha search, the fallback's layer ranking and the sensitivity scan."""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

from torchslim.core.fake_int8 import (
    fake_int8_,
    fake_quantize_activation,
    fake_quantize_weight,
    int8_output_error,
)


def test_activation_is_uint8_affine_per_tensor_so_relu_outputs_use_the_whole_grid():
    x = torch.rand(64, 32) * 6.0  # post-ReLU: nothing below 0
    xq = fake_quantize_activation(x)
    step = 6.0 / 255
    assert (xq - x).abs().max() <= step / 2 + 1e-6  # a symmetric int8 grid would allow 6/127/2
    assert len(torch.unique(xq)) > 128  # more levels than a signed grid has for positives
    assert torch.equal(fake_quantize_activation(torch.zeros(3)), torch.zeros(3))  # 0 is exact
    signed = torch.tensor([-1.0, 0.0, 3.0])
    assert fake_quantize_activation(signed)[1] == 0


def test_weight_is_symmetric_int8_per_output_channel():
    w = torch.stack([torch.linspace(-1, 1, 9), torch.linspace(-1e-3, 1e-3, 9)])
    wq = fake_quantize_weight(w)
    for row, row_q in zip(w, wq, strict=True):  # each row keeps its own scale: the small one survives
        assert (row_q - row).abs().max() <= row.abs().max() / 127.5 / 2 + 1e-7
    assert torch.equal(fake_quantize_weight(torch.zeros(2, 3)), torch.zeros(2, 3))


def test_a_fake_int8_layer_and_the_error_estimate_are_the_same_model():
    torch.manual_seed(0)
    layer = nn.Linear(16, 8, bias=False)
    x = torch.randn(32, 16)
    damaged = copy.deepcopy(layer)
    handle = fake_int8_(damaged)
    with torch.no_grad():
        y, yq = layer(x), damaged(x)
    measured = float((yq - y).pow(2).sum() / y.pow(2).sum())
    assert 0 < measured < 1e-3
    assert abs(int8_output_error(x, [layer.weight]) - measured) <= 1e-6 + 1e-4 * measured
    handle.remove()  # the weight stays rounded; only the input hook goes
    with torch.no_grad():
        torch.testing.assert_close(damaged(x), x @ fake_quantize_weight(layer.weight).T)


def test_a_smoothed_layer_quantizes_its_scaled_input():
    """A layer with ``inv_scale`` (SmoothQuant's SmoothedLinear) multiplies its input first: the
    kernel sees ``x * inv_scale``, so that is what is quantized, then divided back."""
    layer = nn.Linear(4, 2, bias=False)
    layer.inv_scale = torch.tensor([1.0, 1.0, 1.0, 100.0])
    fake_int8_(layer)
    x = torch.tensor([[0.5, 0.25, 0.125, 0.01]])
    captured = []  # registered after fake_int8_'s hook: sees what the matmul gets
    layer.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
    layer(x)
    torch.testing.assert_close(captured[0], fake_quantize_activation(x * layer.inv_scale) / layer.inv_scale)


def test_both_round_trips_are_exactly_the_pt2e_kernels_observers():
    """The scheme X86InductorQuantizer configures: uint8 per-tensor affine activations (MinMax),
    int8 per-channel symmetric weights over [-128, 127]; quantized through the ops a converted
    PT2E graph calls (``quantized_decomposed``), bit for bit."""
    from torchao.quantization.pt2e import MinMaxObserver, PerChannelMinMaxObserver

    ops = torch.ops.quantized_decomposed  # registered by torchao.quantization.pt2e

    torch.manual_seed(0)
    for x in (torch.relu(torch.randn(64, 32)) * 3, torch.randn(64, 32) + 0.5):
        observer = MinMaxObserver(dtype=torch.quint8, qscheme=torch.per_tensor_affine)
        observer(x)
        scale, zero = observer.calculate_qparams()
        q = ops.quantize_per_tensor(x, float(scale), int(zero), 0, 255, torch.uint8)
        kernel = ops.dequantize_per_tensor(q, float(scale), int(zero), 0, 255, torch.uint8)
        torch.testing.assert_close(fake_quantize_activation(x), kernel, rtol=0, atol=1e-6)
    w = torch.randn(16, 8, 3)
    observer = PerChannelMinMaxObserver(dtype=torch.qint8, qscheme=torch.per_channel_symmetric, ch_axis=0,
                                        quant_min=-128, quant_max=127)
    observer(w)
    scale, zero = observer.calculate_qparams()
    q = ops.quantize_per_channel(w, scale, zero, 0, -128, 127, torch.int8)
    kernel = ops.dequantize_per_channel(q, scale, zero, 0, -128, 127, torch.int8)
    torch.testing.assert_close(fake_quantize_weight(w), kernel, rtol=0, atol=1e-6)
