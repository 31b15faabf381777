"""Pruning on PyTorch's standard building blocks: nn.MultiheadAttention (batch first or not),
Transformer encoder/decoder layers (norm first or last), hand-written q/k/v attention, depthwise
and grouped convolutions with squeeze-excite and residual adds, recurrent layers, embeddings
with a position parameter, LayerNorm/GroupNorm/BatchNorm, tied weights.

Channel pruning must really shrink each model and leave it runnable with its attention
consistent (``num_heads x head_dim == embed_dim``); unstructured pruning must reach its
sparsity in the weights MultiheadAttention reads directly and keep it through fine-tuning.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Subset

from torchslim.data import load_data
from torchslim.errors import UnsupportedError
from torchslim.prune import ChannelPruneConfig, MagnitudePruneConfig, leftover_masks, prune

X = torch.rand(4, 1, 8, 8)  # a digits-shaped batch


class _Patches(nn.Module):
    """8x8 image -> 16 tokens of width ``dim`` (a 2x2 patch-embedding convolution)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, dim, 2, stride=2)

    def forward(self, x):
        return self.conv(x).flatten(2).transpose(1, 2)


class _Attention(nn.Module):
    """nn.MultiheadAttention with a residual add and a LayerNorm."""

    def __init__(self, batch_first: bool, dim: int = 32, heads: int = 4) -> None:
        super().__init__()
        self.batch_first = batch_first
        self.patch, self.attn = _Patches(dim), nn.MultiheadAttention(dim, heads, batch_first=batch_first)
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, 10)

    def forward(self, x):
        t = self.patch(x)
        t = t if self.batch_first else t.transpose(0, 1)
        a, _ = self.attn(t, t, t)  # need_weights: the averaged attention weights come back too
        t = self.norm(t + a)
        return self.head((t if self.batch_first else t.transpose(0, 1)).mean(1))


class _AttentionOptions(nn.Module):
    """MultiheadAttention's options: bias_k/v, a zero attention slot, a key padding mask,
    keyword arguments, per-head weights returned."""

    def __init__(self, dim: int = 32) -> None:
        super().__init__()
        self.embed = nn.Linear(8, dim)
        self.attn = nn.MultiheadAttention(dim, 4, batch_first=True, add_bias_kv=True, add_zero_attn=True)
        self.head = nn.Linear(dim, 10)

    def forward(self, x):
        t = self.embed(x.flatten(1, 2))
        padding = torch.zeros(t.shape[:2], dtype=torch.bool)
        padding[:, -2:] = True
        out, _ = self.attn(t, key=t, value=t, key_padding_mask=padding, average_attn_weights=False)
        return self.head((t + out).mean(1))


class _ViT(nn.Module):
    """Patch embedding, class token, position parameter, nn.TransformerEncoder."""

    def __init__(self, norm_first: bool, dim: int = 32, heads: int = 4, layers: int = 2) -> None:
        super().__init__()
        self.patch = _Patches(dim)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, 17, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.0, batch_first=True, norm_first=norm_first)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, 10)

    def forward(self, x):
        t = self.patch(x)
        t = torch.cat([self.cls.expand(t.shape[0], -1, -1), t], 1) + self.pos
        return self.head(self.norm(self.encoder(t))[:, 0])


class _Decoder(nn.Module):
    def __init__(self, norm_first: bool, dim: int = 32, heads: int = 4) -> None:
        super().__init__()
        self.patch = _Patches(dim)
        self.decoder = nn.TransformerDecoderLayer(dim, heads, 2 * dim, dropout=0.0, batch_first=True, norm_first=norm_first)
        self.head = nn.Linear(dim, 10)

    def forward(self, x):
        t = self.patch(x)
        return self.head(self.decoder(t, t).mean(1))


class _MemoryDecoder(nn.Module):
    """A decoder layer whose memory (cross-attention keys/values) has its own producer."""

    def __init__(self, dim: int = 32) -> None:
        super().__init__()
        self.target, self.memory = nn.Linear(8, dim), nn.Linear(8, dim)
        self.decoder = nn.TransformerDecoderLayer(dim, 4, 2 * dim, dropout=0.0, batch_first=True)
        self.head = nn.Linear(dim, 10)

    def forward(self, x):
        rows = x.flatten(1, 2)
        return self.head(self.decoder(self.target(rows), F.relu(self.memory(rows))).mean(1))


class _HandAttention(nn.Module):
    """Written by hand the way users do: q/k/v Linears, ``num_heads``/``head_dim``, SDPA."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.num_heads, self.head_dim = heads, dim // heads
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x):
        b, t, _ = x.shape
        q, k, v = (p(x).view(b, t, self.num_heads, self.head_dim).transpose(1, 2) for p in (self.q_proj, self.k_proj, self.v_proj))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.out_proj(out.transpose(1, 2).reshape(b, t, self.num_heads * self.head_dim))


class _Hand(nn.Module):
    def __init__(self, dim: int = 32, heads: int = 4) -> None:
        super().__init__()
        self.patch, self.attn = _Patches(dim), _HandAttention(dim, heads)
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, 10)

    def forward(self, x):
        t = self.patch(x)
        return self.head(self.norm(t + self.attn(t)).mean(1))


class _CrossAttention(nn.Module):
    """nn.MultiheadAttention whose keys/values have their own width (kdim/vdim), then an FFN."""

    def __init__(self, dim: int = 32) -> None:
        super().__init__()
        self.query, self.memory = nn.Linear(8, dim), nn.Linear(8, 16)
        self.attn = nn.MultiheadAttention(dim, 4, kdim=16, vdim=16, batch_first=True)
        self.up, self.down, self.head = nn.Linear(dim, 2 * dim), nn.Linear(2 * dim, dim), nn.Linear(dim, 10)

    def forward(self, x):
        rows = x.flatten(1, 2)
        q, kv = self.query(rows), self.memory(rows)
        t = q + self.attn(q, kv, kv)[0]
        return self.head((t + self.down(F.relu(self.up(t)))).mean(1))


class _SqueezeExcite(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.reduce, self.expand = nn.Conv2d(channels, channels // 4, 1), nn.Conv2d(channels // 4, channels, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.expand(F.silu(self.reduce(x.mean((2, 3), keepdim=True)))))


class _DepthwiseBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.bn1, self.se = nn.BatchNorm2d(channels), _SqueezeExcite(channels)
        self.pointwise, self.bn2 = nn.Conv2d(channels, channels, 1), nn.BatchNorm2d(channels)

    def forward(self, x):
        return x + self.bn2(self.pointwise(self.se(F.hardswish(self.bn1(self.depthwise(x))))))


class _DepthwiseNet(nn.Module):
    """Depthwise-separable blocks with squeeze-excite and residual adds, a grouped conv, GroupNorm."""

    def __init__(self, channels: int = 32) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, channels, 3, padding=1)
        self.blocks = nn.Sequential(_DepthwiseBlock(channels), _DepthwiseBlock(channels))
        self.grouped, self.norm = nn.Conv2d(channels, channels, 3, padding=1, groups=4), nn.GroupNorm(4, channels)
        self.head = nn.Linear(channels, 10)

    def forward(self, x):
        x = self.blocks(F.silu(self.stem(x)))
        return self.head(F.gelu(self.norm(self.grouped(x))).mean((2, 3)))


class _Recurrent(nn.Module):
    """The image's rows as a sequence through a GRU or LSTM."""

    def __init__(self, kind: type[nn.RNNBase], dim: int = 32) -> None:
        super().__init__()
        self.embed, self.rnn = nn.Linear(8, dim), kind(dim, dim, batch_first=True)
        self.hidden, self.head = nn.Linear(dim, dim), nn.Linear(dim, 10)

    def forward(self, x):
        out, _ = self.rnn(self.embed(x.flatten(1, 2)))
        return self.head(F.relu(self.hidden(out[:, -1])))


class _Embedding(nn.Module):
    """Pixels as tokens: nn.Embedding + a position parameter, an MLP block, LayerNorm."""

    def __init__(self, dim: int = 32) -> None:
        super().__init__()
        self.embed, self.pos = nn.Embedding(17, dim), nn.Parameter(torch.zeros(1, 64, dim))
        self.up, self.down, self.norm = nn.Linear(dim, 2 * dim), nn.Linear(2 * dim, dim), nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 10)

    def forward(self, x):
        t = self.embed((x.flatten(1) * 16).round().long().clamp(0, 16)) + self.pos
        return self.head(self.norm(t + self.down(F.gelu(self.up(t)))).mean(1))


class _Norms(nn.Module):
    def __init__(self, channels: int = 16) -> None:
        super().__init__()
        self.conv1, self.bn = nn.Conv2d(1, channels, 3, padding=1), nn.BatchNorm2d(channels)
        self.conv2, self.gn = nn.Conv2d(channels, 2 * channels, 3, padding=1), nn.GroupNorm(4, 2 * channels)
        self.fc, self.ln, self.head = nn.Linear(2 * channels, 32), nn.LayerNorm(32), nn.Linear(32, 10)

    def forward(self, x):
        x = F.relu(self.gn(self.conv2(F.relu(self.bn(self.conv1(x))))))
        return self.head(F.relu(self.ln(self.fc(x.mean((2, 3))))))


class _Tied(nn.Module):
    """An output projection sharing the embedding's weight."""

    def __init__(self, dim: int = 32) -> None:
        super().__init__()
        self.embed, self.up, self.down = nn.Embedding(17, dim), nn.Linear(dim, 2 * dim), nn.Linear(2 * dim, dim)
        self.out = nn.Linear(dim, 17, bias=False)
        self.out.weight = self.embed.weight
        self.head = nn.Linear(17, 10)

    def forward(self, x):
        t = self.embed((x.flatten(1) * 16).round().long().clamp(0, 16))
        return self.head(self.out(self.down(F.relu(self.up(t)))).mean(1))


BLOCKS = {
    "mha-batch-first": lambda: _Attention(batch_first=True),
    "mha-sequence-first": lambda: _Attention(batch_first=False),
    "mha-options": _AttentionOptions,
    "encoder-norm-first": lambda: _ViT(norm_first=True),
    "encoder-norm-last": lambda: _ViT(norm_first=False),
    "decoder-norm-first": lambda: _Decoder(norm_first=True),
    "decoder-norm-last": lambda: _Decoder(norm_first=False),
    "decoder-own-memory": _MemoryDecoder,
    "hand-written-attention": _Hand,
    "cross-attention-kdim": _CrossAttention,
    "depthwise-se-residual": _DepthwiseNet,
    "gru": lambda: _Recurrent(nn.GRU),
    "lstm": lambda: _Recurrent(nn.LSTM),
    "embedding-position": _Embedding,
    "norms": _Norms,
    "tied-weights": _Tied,
}


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
        if isinstance(m, _HandAttention):
            assert m.num_heads * m.head_dim == m.q_proj.out_features == m.v_proj.out_features == m.out_proj.in_features
            heads += m.num_heads
    return heads


@pytest.fixture(scope="module")
def digits():
    """A fifth of digits' training split: fine-tuning only has to run, not to converge."""
    data = load_data("digits")
    return dataclasses.replace(data, train=Subset(data.train, range(256)), val=Subset(data.val, range(64)))


# 0.3 is the ratio that used to fail: 30% of 32 channels does not divide by 4 heads.
@pytest.mark.parametrize("name", list(BLOCKS))
def test_channel_pruning_shrinks_every_block(name):
    torch.manual_seed(0)
    model = BLOCKS[name]().eval()
    heads = _check_attention(model)
    pruned = prune(model, ChannelPruneConfig(ratio=0.3), example_inputs=(X,))
    kept_whole = isinstance(model, (_Recurrent, _Tied, _CrossAttention))  # much of their weight is in what is kept
    assert _params(pruned) < (1.0 if kept_whole else 0.8) * _params(model)  # really smaller, not only the odd layer
    assert pruned(X).shape == (4, 10)
    if heads and not kept_whole:
        assert 0 < _check_attention(pruned) < heads  # whole heads gone, at least one kept
    if isinstance(model, _CrossAttention):  # kept whole (its keys come from another width); the FFN shrinks
        assert pruned.attn.embed_dim == 32 and pruned.up.out_features < 64
    if isinstance(model, _Recurrent):  # kept whole: only the layers around it shrink
        assert pruned.rnn.input_size == pruned.rnn.hidden_size == 32
        assert pruned.hidden.out_features < 32
    if isinstance(model, _Tied):
        assert pruned.out.weight is pruned.embed.weight and pruned.up.out_features < 64


@pytest.mark.parametrize("prune_heads, heads, head_dim", [(True, 2, 8), (False, 4, 4)])
def test_multihead_attention_loses_whole_heads_or_head_dims(prune_heads, heads, head_dim):
    pruned = prune(_ViT(norm_first=True).eval(), ChannelPruneConfig(ratio=0.5, prune_heads=prune_heads, iterations=2),
                   example_inputs=(X,))
    for layer in pruned.encoder.layers:
        assert (layer.self_attn.num_heads, layer.self_attn.head_dim, layer.self_attn.embed_dim) == (heads, head_dim, 16)
    assert pruned.cls.shape == pruned.pos.shape[:1] + (1, 16)  # the class token and positions follow the width
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
            self.qkv, self.proj = nn.Linear(32, 96), nn.Linear(32, 32)

        def forward(self, t):
            b, n, c = t.shape
            q, k, v = self.qkv(t).view(b, n, 3, 4, 8).permute(2, 0, 3, 1, 4)
            return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c))

    model = _Hand()
    model.attn = Fused()
    with pytest.raises(UnsupportedError, match=r"'attn' \(Fused\).*prune.ignore"):
        prune(model.eval(), ChannelPruneConfig(ratio=0.5), example_inputs=(X,))


def test_magnitude_finetuning_keeps_multihead_attention_sparse(digits):
    """MultiheadAttention reads out_proj.weight and in_proj_weight itself: both are masked,
    fine-tuning (two rounds) trains the rest, and the pruned entries stay exactly zero."""
    torch.manual_seed(0)
    model = _ViT(norm_first=False, dim=16, heads=2, layers=1).eval()
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
    torch.manual_seed(0)
    model = _ViT(norm_first=True, dim=16, heads=2, layers=1).eval()
    pruned = prune(model, ChannelPruneConfig(ratio=0.5, finetune_epochs=1), data=digits, teacher=model)
    assert _check_attention(pruned) == 1 and _params(pruned) < 0.5 * _params(model)
    assert pruned(X).shape == (4, 10)
