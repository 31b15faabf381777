"""Truncated SVD of one layer into two thinner layers.

Linear ``W (out x in)`` -> ``Linear(in, r, bias=False)`` then ``Linear(r, out)``.
Conv ``W (out x in x k x k)`` viewed as ``out x (in k k)`` -> a k x k conv with ``r``
outputs (same stride/padding/dilation) then a 1x1 conv to ``out`` with the bias.
The singular values are split as ``sqrt(S)`` into both factors so neither factor's scale
runs away during fine-tuning. Cost per output position goes from ``in' * out`` to
``r * (in' + out)`` (``in' = in * k * k``), for parameters and MACs alike.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn as nn

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def is_factorizable(module: nn.Module) -> bool:
    if isinstance(module, nn.Linear):
        return True
    # Grouped/depthwise convs are already cheap per group, and a non-zeros padding mode
    # would have to be repeated in the 1x1 conv's semantics: left alone.
    return isinstance(module, _CONVS) and module.groups == 1 and module.padding_mode == "zeros"


def matrix_of(module: nn.Module) -> torch.Tensor:
    """The layer's weight as an ``out x in'`` matrix (float64 for an accurate SVD)."""
    return module.weight.detach().reshape(module.weight.shape[0], -1).to(torch.float64)


@contextmanager
def _one_thread_for_small(matrix: torch.Tensor):
    """Layer matrices are small; multithreaded LAPACK gains nothing on them, and on a busy
    machine its spinning threads made a 256x64 SVD take ~2 s instead of ~15 ms."""
    if matrix.numel() > 4_000_000:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def singular_values(module: nn.Module) -> torch.Tensor:
    matrix = matrix_of(module)
    with _one_thread_for_small(matrix):
        return torch.linalg.svdvals(matrix)


def factorized_cost(module: nn.Module, rank: int) -> tuple[int, int]:
    """(cost before, cost after) in weights per output position (= MACs per position)."""
    out_features, in_features = module.weight.shape[0], module.weight[0].numel()
    return out_features * in_features, rank * (in_features + out_features)


def factorize_layer(module: nn.Module, rank: int) -> nn.Sequential:
    """Two layers whose composition is the rank-``rank`` truncated SVD of ``module``.

    At full rank (``min(out, in')``) it reproduces the layer up to float rounding.
    """
    if not is_factorizable(module):
        raise TypeError(f"cannot factorize {type(module).__name__}")
    weight = module.weight
    matrix = matrix_of(module)
    with _one_thread_for_small(matrix):
        u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
    rank = max(1, min(int(rank), len(s)))
    root = s[:rank].sqrt()
    first_w = (root[:, None] * vh[:rank]).to(weight.dtype)  # rank x in'
    second_w = (u[:, :rank] * root[None, :]).to(weight.dtype)  # out x rank
    bias = module.bias is not None
    factory = {"device": weight.device, "dtype": weight.dtype}
    if isinstance(module, nn.Linear):
        first = nn.Linear(module.in_features, rank, bias=False, **factory)
        second = nn.Linear(rank, module.out_features, bias=bias, **factory)
        first.weight.data.copy_(first_w)
        second.weight.data.copy_(second_w)
    else:
        conv = type(module)
        first = conv(module.in_channels, rank, module.kernel_size, stride=module.stride, padding=module.padding,
                     dilation=module.dilation, bias=False, **factory)
        second = conv(rank, module.out_channels, 1, bias=bias, **factory)
        first.weight.data.copy_(first_w.reshape(rank, *weight.shape[1:]))
        second.weight.data.copy_(second_w.reshape(module.out_channels, rank, *([1] * (weight.dim() - 2))))
    if bias:
        second.bias.data.copy_(module.bias.detach())
    return nn.Sequential(first, second)
