"""Attention modules that channel pruning knows how to shrink by whole heads.

Torch-Pruning couples q, k, v and the output projection's inputs into one group; what it
cannot know is the attribute a module reshapes with. Two shapes are recognized:

- the zoo's ``SelfAttention`` and hand-written attention: ``q``/``k``/``v`` (or ``q_proj``...)
  Linears and ``heads`` / ``num_heads`` (reshaping to ``(b, t, heads, -1)`` or ``(b, t,
  num_heads, head_dim)``; ``head_dim`` is rewritten too);
- Hugging Face self-attention (BERT, RoBERTa, MiniLM, ...): ``query``/``key``/``value``
  Linears and ``num_attention_heads``; transformers 5 reshapes to ``(b, t, -1,
  attention_head_size)`` and keeps ``all_head_size`` beside it.

After every pruner step ``sync`` writes the new head count and head size back, so the module
still runs. (``nn.MultiheadAttention`` is not one of these: its heads live inside one fused
projection, see ``_blocks.py``.) The softmax ``scaling`` (1/sqrt(original head size)) of HF modules is left as it
is: removing whole heads does not change the head size, and with head *dims* pruned the kept
dimensions are the largest terms of the same dot products, which the trained scale fits.

Hugging Face models also keep their hidden size (the residual stream): it is the embedding's
width for encoders and ``config.hidden_size`` for everything around them. Every module coupled
to it (LayerNorms, the output projections' outputs, q/k/v's inputs) is in one Torch-Pruning
group together with the token embedding's width, so naming the ``nn.Embedding`` layers in
``ignored_layers`` makes that whole group unprunable, while the head groups (q/k/v outputs +
the attention output projection's inputs) and FFN groups (first FFN Linear's outputs + the
second's inputs) stay prunable. ``check_widths_kept`` verifies it after each step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch.nn as nn

from torchslim.errors import UnsupportedError

_PROJECTION_NAMES = (("q", "k", "v"), ("q_proj", "k_proj", "v_proj"), ("query", "key", "value"))
_HEAD_COUNTS = ("num_attention_heads", "heads", "num_heads", "n_heads", "n_head")  # HF first: it may keep both
_HEAD_SIZES = ("head_dim", "attention_head_size", "head_size", "d_head")  # rewritten: width // heads
_INNER_WIDTHS = ("all_head_size", "inner_dim")  # rewritten: heads x head size


@dataclass
class Attention:
    """One recognized attention module, its q, k, v projections and the attribute holding its
    head count (``heads``, ``num_heads``, ``num_attention_heads``, ...)."""

    module: nn.Module
    projections: tuple[nn.Linear, nn.Linear, nn.Linear]
    hugging_face: bool
    initial_heads: int
    heads_attribute: str = "heads"

    @property
    def heads(self) -> int:
        return int(getattr(self.module, self.heads_attribute))

    def sync(self, heads: int) -> None:
        """Make the module's reshape attributes match its (pruned) projections: the head count,
        and the head size and inner width wherever the module keeps them."""
        width = self.projections[0].out_features
        setattr(self.module, self.heads_attribute, heads)
        for names, value in ((_HEAD_SIZES, width // heads), (_INNER_WIDTHS, width)):
            for name in names:
                if isinstance(getattr(self.module, name, None), int):
                    setattr(self.module, name, value)


def attention_modules(model: nn.Module) -> list[Attention]:
    """Every self-attention module of ``model`` written with three q/k/v Linears and an integer
    head count: the zoo's, Hugging Face's (BERT & co.), and hand-written ones (``q_proj``...,
    ``num_heads``) that reshape with those attributes and ``F.scaled_dot_product_attention``."""
    found = []
    for m in model.modules():
        for names in _PROJECTION_NAMES:
            projections = tuple(getattr(m, n, None) for n in names)
            attribute = next((a for a in _HEAD_COUNTS if isinstance(getattr(m, a, None), int)), None)
            if attribute is None or not all(isinstance(p, nn.Linear) for p in projections):
                continue
            hugging_face = attribute == "num_attention_heads" and isinstance(getattr(m, "attention_head_size", None), int)
            if attribute == "num_attention_heads" and not hugging_face:
                continue  # HF-looking without a head size: we would not know how it reshapes
            found.append(Attention(m, projections, hugging_face, getattr(m, attribute), attribute))
            break
    return found


def head_count(model: nn.Module) -> int:
    """Attention heads in ``model``: recognized attention modules' and ``nn.MultiheadAttention``'s."""
    mha = sum(m.num_heads for m in model.modules() if isinstance(m, nn.MultiheadAttention))
    return mha + sum(att.heads for att in attention_modules(model))


def hidden_width_layers(model: nn.Module, attention: list[Attention]) -> list[nn.Module]:
    """Layers to ignore so that a Hugging Face model's hidden size is never pruned: its
    embeddings (see the module docstring for why that is enough). None for other models."""
    if not any(a.hugging_face for a in attention):
        return []
    return [m for m in model.modules() if isinstance(m, nn.Embedding)]


def head_ratio_for_step(attention: Attention, ratio: float, iterations: int, step: int) -> float:
    """The head-pruning ratio to hand Torch-Pruning for ``step`` (1-based) of ``iterations``
    so that ``ceil(ratio x initial heads)`` heads are gone after the last step, never all.

    Torch-Pruning 1.6 removes ``ceil(r_s x heads_now)`` heads at step s, with r_s the
    *cumulative* scheduled ratio: over several steps that compounds (ratio 0.5 in two steps
    removes 3 of 12 heads, then 5 of the 9 left: 67%), and a ratio near 1 removes every head.
    The returned ratio makes its ceil land exactly on this step's share.
    """
    h0 = attention.initial_heads
    # 1e-9: 0.7 * 10 is 7.000000000000001 in floating point and must not round up to 8
    target_removed = min(h0 - 1, math.ceil(ratio * step / iterations * h0 - 1e-9))
    remove = target_removed - (h0 - attention.heads)
    return (remove - 0.5) / attention.heads if remove > 0 else 0.0


def kept_widths(model: nn.Module, layers: list[nn.Module]) -> dict[str, int]:
    """Name -> width of ``layers`` (the embeddings) and, with any given, of every LayerNorm:
    the widths of the hidden size that pruning must leave as they are."""
    if not layers:
        return {}
    names = {m: n for n, m in model.named_modules()}
    widths = {names[m]: _width(m) for m in layers}
    widths.update({n: _width(m) for n, m in model.named_modules() if isinstance(m, nn.LayerNorm)})
    return widths


def check_widths_kept(model: nn.Module, expected: dict[str, int]) -> None:
    """UnsupportedError if pruning changed a width that had to stay (the hidden size)."""
    modules = dict(model.named_modules())
    changed = {n: (w, _width(modules[n])) for n, w in expected.items() if _width(modules[n]) != w}
    if changed:
        sample = ", ".join(f"{n}: {a} -> {b}" for n, (a, b) in list(changed.items())[:4])
        raise UnsupportedError(f"Channel pruning changed the model's hidden width ({sample}); it must stay. "
                               "List the layers that write the residual stream under prune.ignore.")


def _width(m: nn.Module) -> int:
    return int(m.embedding_dim) if isinstance(m, nn.Embedding) else int(m.normalized_shape[-1])
