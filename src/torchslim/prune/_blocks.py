"""PyTorch's standard blocks that Torch-Pruning needs told how to prune (or not to).

``nn.MultiheadAttention`` (and so ``nn.TransformerEncoderLayer``/``DecoderLayer``) computes
its heads inside one module whose inner width (``num_heads x head_dim``) must equal its input
width (``embed_dim``, the residual stream): the class has no way to hold fewer heads than
residual channels. So channel pruning shrinks both together. Torch-Pruning couples the
residual stream (the patch embedding, class token, position embedding, LayerNorms, every
projection reading or writing it) into one group and picks which *residual* channels go by
importance; this handler then removes as many *inner* channels, chosen on their own:

- ``whole_heads`` (``prune_heads: true``): the lowest-L1 heads (q, k, v rows and out_proj
  columns together), so ``num_heads`` drops and ``head_dim`` stays;
- otherwise the same number of lowest-L1 dimensions from every head: ``head_dim`` drops.

Torch-Pruning's own handler removes the *same* indices from both sides, so heads lose
arbitrary dimensions and ``embed_dim`` stops dividing by ``num_heads`` at most ratios (the
"embed_dim must divide evenly by num_heads" failure). ``heads_multiple`` tells the pruning
loop the step the residual group's count must be a multiple of.

Recurrent layers (``nn.RNN``/``GRU``/``LSTM``) are *frozen*: Torch-Pruning 1.6 traces into
their fused kernels (their weights look like free parameters; a GRU fails with an IndexError,
an LSTM's gates are indexed wrongly), so every group that reaches a recurrent layer is left
alone: the rest of the model is pruned.

While Torch-Pruning traces, recurrent layers and MultiheadAttention modules are each passed
through a one-node barrier (``traced_as_one_node``): the tracer sees their tensor inputs (an
attention's query, key and value) lead to their output and nothing inside, where their own
parameters and ops (``add_zero_attn``'s concatenation) would confuse it.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn as nn
import torch_pruning as tp

from torchslim.errors import UnsupportedError


class MultiheadAttentionPruner(tp.pruner.function.BasePruningFunc):
    """Removes residual channels ``idxs`` and as many inner channels (whole heads or per-head
    dimensions, see the module docstring) from an ``nn.MultiheadAttention``."""

    TARGET_MODULES = nn.MultiheadAttention

    def __init__(self, whole_heads: bool) -> None:
        super().__init__()
        self.whole_heads = whole_heads

    def prune_out_channels(self, layer: nn.MultiheadAttention, idxs) -> nn.Module:
        width = layer.embed_dim
        removed = {int(i) for i in idxs}
        keep_outer = [i for i in range(width) if i not in removed]
        inner_removed, heads = self._inner_channels(layer, len(removed))
        keep_inner = [i for i in range(width) if i not in inner_removed]
        rows = keep_inner + [width + i for i in keep_inner] + [2 * width + i for i in keep_inner]
        cut = self._prune_parameter_and_grad
        layer.in_proj_weight = cut(cut(layer.in_proj_weight, rows, 0), keep_outer, 1)
        if layer.in_proj_bias is not None:
            layer.in_proj_bias = cut(layer.in_proj_bias, rows, 0)
        if layer.bias_k is not None:  # (1, 1, width): appended keys/values live in the inner width
            layer.bias_k = cut(layer.bias_k, keep_inner, 2)
            layer.bias_v = cut(layer.bias_v, keep_inner, 2)
        out = layer.out_proj
        out.weight = cut(cut(out.weight, keep_outer, 0), keep_inner, 1)
        if out.bias is not None:
            out.bias = cut(out.bias, keep_outer, 0)
        out.in_features, out.out_features = len(keep_inner), len(keep_outer)
        layer.embed_dim = layer.kdim = layer.vdim = len(keep_outer)
        layer.num_heads, layer.head_dim = heads, len(keep_inner) // heads
        return layer

    prune_in_channels = prune_out_channels  # one width: the module's input is its output's

    def get_out_channels(self, layer: nn.MultiheadAttention) -> int:
        return layer.embed_dim

    get_in_channels = get_out_channels

    @torch.no_grad()
    def _inner_channels(self, layer: nn.MultiheadAttention, count: int) -> tuple[set[int], int]:
        """The ``count`` inner channels to remove and the head count left."""
        width, heads, head_dim = layer.embed_dim, layer.num_heads, layer.head_dim
        # A channel's L1 weight over everything that reads or writes it: its q, k, v rows and
        # the out_proj column it feeds. (Scores only choose *which* heads; how many is the group's.)
        q, k, v = layer.in_proj_weight.abs().sum(1).view(3, width)
        score = q + k + v + layer.out_proj.weight.abs().sum(0)
        if self.whole_heads and count % head_dim == 0 and count < width:
            gone = torch.topk(score.view(heads, head_dim).sum(1), count // head_dim, largest=False).indices
            return {int(h) * head_dim + d for h in gone for d in range(head_dim)}, heads - count // head_dim
        if count % heads == 0 and count < width:
            per_head = torch.topk(score.view(heads, head_dim), count // heads, dim=1, largest=False).indices
            return {h * head_dim + int(d) for h in range(heads) for d in per_head[h]}, heads
        raise UnsupportedError(
            f"prune: cannot remove {count} of the {width} channels of a MultiheadAttention with {heads} heads of "
            f"{head_dim} (whole heads need a multiple of {head_dim}, per-head dimensions a multiple of {heads}).")


def heads_multiple(modules: list[nn.MultiheadAttention], whole_heads: bool) -> int:
    """The residual channel count removed at once must be a multiple of this for every one of
    ``modules`` (which share one residual stream)."""
    return math.lcm(*(m.head_dim if whole_heads else m.num_heads for m in modules))


class FrozenPruner(tp.pruner.function.BasePruningFunc):
    """A layer Torch-Pruning must trace around but never prune (its groups are skipped)."""

    def prune_out_channels(self, layer: nn.Module, idxs) -> nn.Module:
        raise UnsupportedError(f"prune: {type(layer).__name__} layers are never channel-pruned; list it under prune.ignore.")

    def prune_in_channels(self, layer: nn.Module, idxs) -> nn.Module:
        raise UnsupportedError(f"prune: {type(layer).__name__} layers are never channel-pruned; list it under prune.ignore.")

    def get_out_channels(self, layer: nn.Module) -> int:
        return layer.hidden_size * (2 if layer.bidirectional else 1)

    def get_in_channels(self, layer: nn.Module) -> int:
        return layer.input_size


def customized_pruners(model: nn.Module, whole_heads: bool) -> tuple[dict, list[nn.Module], list[nn.Module]]:
    """Torch-Pruning's ``customized_pruners`` for ``model``'s standard blocks; the recurrent
    layers (traced as one node, never pruned); and every module whose groups the pruning loop
    must skip: those, and modules sharing a parameter (tied weights: Torch-Pruning would cut
    each side by its own group and untie them)."""
    pruners: dict = {}
    recurrent = [m for m in model.modules() if isinstance(m, nn.RNNBase)]
    for m in recurrent:
        pruners[type(m)] = FrozenPruner()
    mha = MultiheadAttentionPruner(whole_heads)
    for m in model.modules():
        if isinstance(m, nn.MultiheadAttention):
            pruners[type(m)] = mha
    return pruners, recurrent, recurrent + tied_modules(model)


def tied_modules(model: nn.Module) -> list[nn.Module]:
    """Modules holding a parameter that another module holds too."""
    owners: dict[int, list[nn.Module]] = {}
    for m in model.modules():
        for p in m.parameters(recurse=False):
            owners.setdefault(id(p), []).append(m)
    return list({id(m): m for group in owners.values() if len(group) > 1 for m in group}.values())


def unprunable_attention(model: nn.Module) -> list[nn.Module]:
    """MultiheadAttention modules whose keys/values have their own widths (``kdim``/``vdim``):
    those come from another tensor, so they stay as they are (their groups are ignored)."""
    return [m for m in model.modules() if isinstance(m, nn.MultiheadAttention) and not m._qkv_same_embed_dim]


class _Barrier(torch.autograd.Function):
    """``y`` as a new tensor whose autograd node leads only to ``inputs``: what Torch-Pruning's
    tracer sees of a module traced as one node (its inputs -> its output), not its insides."""

    @staticmethod
    def forward(ctx, y: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor:
        return y.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return (None,) * len(ctx.needs_input_grad)


@contextlib.contextmanager
def traced_as_one_node(modules: list[nn.Module]) -> Iterator[None]:
    """While Torch-Pruning traces: each of ``modules`` shows as one node from its tensor
    inputs (a recurrent layer's sequence, an attention's query, key and value) to its output.
    (Gradients stop there, so this must never be active while anything trains or scores.)"""

    def hook(_module, args, kwargs, output):
        first = output[0] if isinstance(output, tuple) else output
        inputs = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor) and a.is_floating_point()]
        if not inputs or not isinstance(first, torch.Tensor):
            return None
        barrier = _Barrier.apply(first.detach(), *inputs)
        return (barrier, *output[1:]) if isinstance(output, tuple) else barrier

    handles = [m.register_forward_hook(hook, with_kwargs=True) for m in modules]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
