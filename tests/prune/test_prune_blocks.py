"""Pruning on PyTorch's standard building blocks: every block of the catalogue
(tests/fixtures/blocks.py, the contract test's single source): nn.MultiheadAttention (batch
first or not, its rarer options, other-width keys), Transformer encoder/decoder layers (norm
first or last, a decoder's own memory), hand-written q/k/v attention, depthwise and grouped
convolutions with squeeze-excite and residual adds, recurrent layers, embeddings with a
position parameter, LayerNorm/GroupNorm/BatchNorm, tied weights.

Channel pruning must really shrink each model and leave it runnable with its attention
consistent (``num_heads x head_dim == embed_dim``), or refuse up front naming the layers it
keeps whole; unstructured pruning must reach its sparsity in the weights MultiheadAttention
reads directly and keep it through fine-tuning.
"""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Subset

from tests.fixtures.blocks import BLOCKS, SDPAttention, build
from torchslim.data import load_data
from torchslim.errors import ConfigError, UnsupportedError
from torchslim.prune import ChannelPruneConfig, MagnitudePruneConfig, leftover_masks, prune

X = torch.rand(4, 1, 8, 8)  # a digits-shaped batch
X[:, :, 0] = 0  # a blank top row, as digits have: the token blocks' key padding mask is not empty

# Layers channel pruning keeps whole: a block whose every prunable group reaches one is refused
# with their names; a block with other layers around one keeps it and shrinks the rest.
REFUSED = {"gru": "'rnn' (GRU)", "lstm": "'rnn' (LSTM)", "tied-weights": "'embed' (Embedding), 'decode' (Linear)"}
KEPT_WHOLE = {"cross-attention-kdim", "embedding-positional"}  # most of their weights are in what is kept


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _check_attention(model: nn.Module) -> int:
    """Every attention module's widths agree; returns the number of heads."""
    heads = 0
    for m in model.modules():
        if isinstance(m, nn.MultiheadAttention):
            assert m.num_heads * m.head_dim == m.embed_dim == m.out_proj.in_features == m.out_proj.out_features
            if m._qkv_same_embed_dim:
                assert m.in_proj_weight.shape == (3 * m.embed_dim, m.embed_dim)
            heads += m.num_heads
        if isinstance(m, SDPAttention):  # its head width follows from q's output
            assert m.q.out_features % m.num_heads == 0
            assert m.q.out_features == m.k.out_features == m.v.out_features == m.out.in_features
            heads += m.num_heads
    return heads


@pytest.fixture(scope="module")
def digits():
    """A fifth of digits' training split: fine-tuning only has to run, not to converge."""
    data = load_data("digits")
    return dataclasses.replace(data, train=Subset(data.train, range(256)), val=Subset(data.val, range(64)))


# 0.3 is the ratio that used to fail: 30% of the width does not divide by the head count.
@pytest.mark.parametrize("name", list(BLOCKS))
def test_channel_pruning_shrinks_every_block(name):
    model = build(name)
    heads = _check_attention(model)
    if name in REFUSED:
        with pytest.raises(ConfigError, match=rf"removed nothing.*{re.escape(REFUSED[name])}.*method: magnitude"):
            prune(model, ChannelPruneConfig(ratio=0.3), example_inputs=(X,))
        return
    pruned = prune(model, ChannelPruneConfig(ratio=0.3), example_inputs=(X,))
    assert _params(pruned) < (0.95 if name in KEPT_WHOLE else 0.7) * _params(model)  # really smaller
    assert pruned(X).shape == (4, 10)
    if heads and name not in KEPT_WHOLE:
        assert 0 < _check_attention(pruned) < heads  # whole heads gone, at least one kept
    if name == "cross-attention-kdim":  # kept whole (its keys come from another width); the FFN shrinks
        assert pruned.attn.embed_dim == 16 and pruned.attn.num_heads == 2 and pruned.up.out_features < 32


@pytest.mark.parametrize("prune_heads, heads, head_dim", [(True, 1, 8), (False, 2, 4)])
def test_multihead_attention_loses_whole_heads_or_head_dims(prune_heads, heads, head_dim):
    pruned = prune(build("vit-class-token"), ChannelPruneConfig(ratio=0.5, prune_heads=prune_heads, iterations=2),
                   example_inputs=(X,))
    for layer in pruned.encoder.layers:  # 2 heads of 8 -> 1 head of 8, or 2 heads of 4
        assert (layer.self_attn.num_heads, layer.self_attn.head_dim, layer.self_attn.embed_dim) == (heads, head_dim, 8)
    assert pruned.cls.shape == pruned.pos.shape[:1] + (1, 8)  # the class token and positions follow the width
    assert pruned(X).shape == (4, 10)


@torch.no_grad()
def test_multihead_attention_pruner_keeps_the_function():
    """Residual channels that carry nothing and a head that writes nothing: removing them
    changes no remaining output (so q, k, v rows, out_proj and the head split stay aligned)."""
    from torchslim.prune._blocks import MultiheadAttentionPruner

    torch.manual_seed(0)
    attention = nn.MultiheadAttention(32, 4, batch_first=True).eval()
    dead_head, removed = 2, [1, 5, 9, 30, 31, 17, 20, 3]
    attention.in_proj_weight.view(3, 4, 8, 32)[:, dead_head] *= 1e-3  # the lowest-L1 head...
    attention.out_proj.weight[:, dead_head * 8:(dead_head + 1) * 8] = 0  # ...which writes nothing
    x = torch.randn(2, 5, 32)
    x[..., removed] = 0
    expected = attention(x, x, x)[0]
    MultiheadAttentionPruner(whole_heads=True).prune_out_channels(attention, removed)
    kept = [i for i in range(32) if i not in removed]
    assert (attention.num_heads, attention.head_dim, attention.embed_dim) == (3, 8, 24)
    torch.testing.assert_close(attention(x[..., kept], x[..., kept], x[..., kept])[0], expected[..., kept])


def test_unrecognized_attention_is_named():
    class Fused(nn.Module):  # one qkv Linear and a literal head count: not followable
        def __init__(self) -> None:
            super().__init__()
            self.qkv, self.proj = nn.Linear(16, 48), nn.Linear(16, 16)

        def forward(self, t, *_args, **_kwargs):  # called as MultiheadAttention is
            b, n, c = t.shape
            q, k, v = self.qkv(t).view(b, n, 3, 2, 8).permute(2, 0, 3, 1, 4)
            return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c)), None

    model = build("mha-batch-first")
    model.attn = Fused()
    with pytest.raises(UnsupportedError, match=r"'attn' \(Fused\).*prune.ignore"):
        prune(model.eval(), ChannelPruneConfig(ratio=0.5), example_inputs=(X,))


def test_magnitude_finetuning_keeps_multihead_attention_sparse(digits):
    """MultiheadAttention reads out_proj.weight and in_proj_weight itself: both are masked,
    fine-tuning (two rounds) trains the rest, and the pruned entries stay exactly zero."""
    model = build("encoder-post-norm")
    config = MagnitudePruneConfig(ratio=0.6, iterations=2, finetune_epochs=1)
    pruned = prune(model, config, data=digits)
    untrained = prune(model, MagnitudePruneConfig(ratio=0.6), example_inputs=(X,))
    assert not leftover_masks(pruned)
    for name in ("in_proj_weight", "out_proj.weight"):
        weight = pruned.encoder.layers[0].self_attn.get_parameter(name)
        assert (weight == 0).sum().item() == round(0.6 * weight.numel())
        reference = untrained.encoder.layers[0].self_attn.get_parameter(name)
        assert not torch.equal(weight, reference)  # fine-tuning moved the kept weights
    assert pruned(X).shape == (4, 10)


def test_channel_pruning_distills_a_transformer(digits):
    """Channel pruning with fine-tuning from the unpruned model (the distill-after-prune recipes)."""
    model = build("vit-class-token")
    pruned = prune(model, ChannelPruneConfig(ratio=0.5, finetune_epochs=1), data=digits, teacher=model)
    assert _check_attention(pruned) == 1 and _params(pruned) < 0.5 * _params(model)
    assert pruned(X).shape == (4, 10)
