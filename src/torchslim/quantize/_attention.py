"""``nn.MultiheadAttention`` as four plain ``nn.Linear`` layers, so that Linear quantization reaches it.

MultiheadAttention keeps its q/k/v projection as one fused ``in_proj_weight`` parameter and reads
``out_proj.weight`` directly (``F.multi_head_attention_forward``), never calling ``out_proj``.
torchao's tensor-subclass quantization therefore misses the fused projection, and a quantized
``out_proj`` weight reaches ops torchao does not implement under ``torch.export`` (``aten.t``):
the model runs eagerly but cannot be saved. ``SplitAttention`` is the same computation with
``q_proj``/``k_proj``/``v_proj``/``out_proj`` Linears and ``F.scaled_dot_product_attention``
(explicit softmax when the attention weights are asked for), so every projection is quantized
and the result exports like hand-written attention. It takes MultiheadAttention's call
signature (masks, ``need_weights``, ``average_attn_weights``, ``is_causal``, both layouts), so
``nn.TransformerEncoderLayer``/``DecoderLayer`` and users' modules call it unchanged.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class SplitAttention(nn.Module):
    """MultiheadAttention with separate q/k/v/out Linear layers (same weights, same outputs)."""

    # Read by nn.TransformerEncoder(Layer)'s fast-path checks: with no fused in_proj bias they
    # take the ordinary path, which calls this module.
    in_proj_weight = None
    in_proj_bias = None
    _qkv_same_embed_dim = True

    def __init__(self, mha: nn.MultiheadAttention) -> None:
        super().__init__()
        self.embed_dim, self.num_heads, self.batch_first = mha.embed_dim, mha.num_heads, mha.batch_first
        self.dropout = mha.dropout
        e = mha.embed_dim
        kdim, vdim = mha.kdim, mha.vdim
        bias = mha.in_proj_bias is not None
        self.q_proj, self.k_proj, self.v_proj = nn.Linear(e, e, bias), nn.Linear(kdim, e, bias), nn.Linear(vdim, e, bias)
        self.out_proj = nn.Linear(e, e, mha.out_proj.bias is not None)
        with torch.no_grad():
            if mha._qkv_same_embed_dim:
                weights = mha.in_proj_weight.chunk(3)
            else:
                weights = (mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight)
            biases = mha.in_proj_bias.chunk(3) if bias else (None, None, None)
            for proj, w, b in zip((self.q_proj, self.k_proj, self.v_proj), weights, biases, strict=True):
                proj.weight.copy_(w)
                if b is not None:
                    proj.bias.copy_(b)
            self.out_proj.weight.copy_(mha.out_proj.weight)
            if mha.out_proj.bias is not None:
                self.out_proj.bias.copy_(mha.out_proj.bias)
        self.to(device=mha.out_proj.weight.device, dtype=mha.out_proj.weight.dtype)
        self.train(mha.training)

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        unbatched = query.dim() == 2
        if unbatched:  # (L, E): one sequence, and a key padding mask of shape (S,)
            query, key, value = (t.unsqueeze(0) for t in (query, key, value))
            key_padding_mask = key_padding_mask.unsqueeze(0) if key_padding_mask is not None else None
        elif not self.batch_first:  # (L, N, E) -> (N, L, E)
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        n, length, _ = query.shape
        source = key.shape[1]
        heads = self.num_heads
        q = self.q_proj(query).reshape(n, length, heads, -1).transpose(1, 2)
        k = self.k_proj(key).reshape(n, source, heads, -1).transpose(1, 2)
        v = self.v_proj(value).reshape(n, source, heads, -1).transpose(1, 2)
        mask = self._mask(key_padding_mask, attn_mask, is_causal, n, length, source, q.dtype)
        dropout = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            scores = q @ k.transpose(-2, -1) / (q.shape[-1] ** 0.5)
            weights = torch.softmax(scores if mask is None else scores + mask, dim=-1)
            out = F.dropout(weights, dropout, self.training) @ v
            weights = weights.mean(dim=1) if average_attn_weights else weights
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        out = self.out_proj(out.transpose(1, 2).reshape(n, length, self.embed_dim))
        if unbatched:
            return out.squeeze(0), (weights.squeeze(0) if weights is not None else None)
        return (out if self.batch_first else out.transpose(0, 1)), weights

    def _mask(self, key_padding_mask, attn_mask, is_causal, n, length, source, dtype):
        """One additive float mask (N, H or 1, L, S), or None; True in a bool mask = not attended."""
        if is_causal and attn_mask is None:
            attn_mask = torch.ones(length, source, dtype=torch.bool, device=self.out_proj.weight.device).triu(1)
        mask = None
        if attn_mask is not None:
            attn_mask = _additive(attn_mask, dtype)
            mask = attn_mask.reshape(n, self.num_heads, length, source) if attn_mask.dim() == 3 else attn_mask
        if key_padding_mask is not None:
            padding = _additive(key_padding_mask, dtype).reshape(n, 1, 1, source)
            mask = padding if mask is None else mask + padding
        return mask


def _additive(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))
    return mask.to(dtype)


def splittable(module: nn.Module) -> bool:
    """A MultiheadAttention SplitAttention reproduces (no bias_k/bias_v, no add_zero_attn)."""
    return isinstance(module, nn.MultiheadAttention) and module.bias_k is None and not module.add_zero_attn


def split_attention_(model: nn.Module, skips=lambda _m, _n: False) -> list[str]:
    """Replace every splittable MultiheadAttention not skipped by a SplitAttention, in place;
    returns their names. A TransformerEncoder holding one stops taking its nested-tensor fast
    path (which reads the fused weights)."""
    names = [n for n, m in model.named_modules() if n and splittable(m) and not skips(m, n)]
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, SplitAttention(getattr(parent, child)))
    if names:
        for module in model.modules():
            if isinstance(module, nn.TransformerEncoder):
                module.use_nested_tensor = False
    return names


def read_directly(model: nn.Module) -> set[str]:
    """Linear layers whose weight a MultiheadAttention left in the model reads itself (its
    ``out_proj``): quantizing or replacing them breaks that module."""
    return {f"{n}.out_proj" if n else "out_proj" for n, m in model.named_modules()
            if isinstance(m, nn.MultiheadAttention)}
