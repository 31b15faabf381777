"""SplitAttention: nn.MultiheadAttention as plain Linears computes the same outputs, so Linear
quantization (torchao dynamic/weight-only int8) reaches its projections and the model exports."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from torchslim.quantize._attention import SplitAttention, split_attention_


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize("mask", ["none", "bool-padding", "float-attn", "causal-3d"])
def test_split_attention_matches_multihead_attention(batch_first, need_weights, mask):
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(16, 4, batch_first=batch_first).eval()
    with torch.no_grad():  # non-zero biases, so a wrong split of in_proj_bias shows
        mha.in_proj_bias.normal_()
        mha.out_proj.bias.normal_()
    x = torch.randn(3, 5, 16) if batch_first else torch.randn(5, 3, 16)
    kwargs: dict = {"need_weights": need_weights}
    if mask == "bool-padding":
        kwargs["key_padding_mask"] = torch.tensor([[False] * 5, [False] * 3 + [True] * 2, [False] * 4 + [True]])
    elif mask == "float-attn":
        kwargs["attn_mask"] = torch.randn(5, 5)
    elif mask == "causal-3d":
        kwargs["attn_mask"] = torch.ones(5, 5, dtype=torch.bool).triu(1).expand(3 * 4, 5, 5)
        kwargs["average_attn_weights"] = False
    split = SplitAttention(mha).eval()
    with torch.no_grad():
        want, want_w = mha(x, x, x, **kwargs)
        got, got_w = split(x, x, x, **kwargs)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    if need_weights:
        torch.testing.assert_close(got_w, want_w, atol=1e-5, rtol=1e-4)
    else:
        assert got_w is None


def test_split_attention_takes_other_key_widths_and_unbatched_inputs():
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(16, 2, kdim=8, vdim=12).eval()
    q, k, v = torch.randn(4, 16), torch.randn(6, 8), torch.randn(6, 12)
    with torch.no_grad():
        torch.testing.assert_close(SplitAttention(mha)(q, k, v)[0], mha(q, k, v)[0], atol=1e-5, rtol=1e-4)


def test_transformer_layers_call_the_split_attention():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
    model = nn.TransformerEncoder(layer, 2).eval()
    x, pad = torch.randn(2, 6, 16), torch.tensor([[False] * 6, [False] * 4 + [True] * 2])
    with torch.no_grad():
        want = model(x, src_key_padding_mask=pad)
        names = split_attention_(model)
        got = model(x, src_key_padding_mask=pad)
    assert names == ["layers.0.self_attn", "layers.1.self_attn"]
    assert all(isinstance(m.self_attn, SplitAttention) for m in model.layers)
    # the nested-tensor fast path zeroes padded positions; the ordinary path computes them
    torch.testing.assert_close(got[~pad], want[~pad], atol=1e-5, rtol=1e-4)
