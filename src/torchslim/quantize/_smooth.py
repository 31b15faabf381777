"""SmoothQuant (Xiao et al., 2023): move activation outliers into the weights before static int8.

A transformer's LayerNorm outputs have a few channels tens of times larger than the rest, so
one per-tensor int8 scale for the activation wastes most of its 256 levels on them. For a
Linear ``y = x W^T`` and any positive per-input-channel ``s``, ``y = (x / s) (W * s)^T``
exactly; with ``s_j = max|x_j|^alpha / max|W[:, j]|^(1 - alpha)`` the activation's channels
are evened out and the weight (quantized per output channel, so it tolerates it) takes the
spread. ``alpha`` trades one against the other; ``auto`` picks it per layer from a grid by
the measured error of that layer's int8 output on calibration data.

Where the ``1 / s`` goes decides what it costs at inference:

- a LayerNorm whose output feeds only the smoothed Linears (q/k/v after a pre-norm
  attention LayerNorm, an FFN's first Linear after its LayerNorm): folded into the
  LayerNorm's weight and bias, free;
- anything else (post-norm models such as BERT, where the LayerNorm output also feeds the
  residual): an explicit per-channel multiply before the Linear (``SmoothedLinear``), one
  elementwise op that inductor fuses with the activation's quantize.

Which case applies is read from the ``torch.export`` graph, not guessed from module names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from torchslim.core.export import export_program
from torchslim.core.fake_int8 import int8_output_error

ALPHA_GRID = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
_SAMPLE_ROWS = 4096  # activation rows kept per group to score alphas; ~1 MB per 64-wide group


class SmoothedLinear(nn.Linear):
    """A Linear whose input is multiplied by ``inv_scale`` first: the ``1 / s`` of SmoothQuant
    where no LayerNorm can absorb it. Same name and weight layout as the Linear it replaces."""

    def __init__(self, linear: nn.Linear, inv_scale: torch.Tensor) -> None:
        super().__init__(linear.in_features, linear.out_features, bias=linear.bias is not None,
                         device=linear.weight.device, dtype=linear.weight.dtype)
        self.weight = linear.weight
        self.bias = linear.bias
        self.register_buffer("inv_scale", inv_scale.to(linear.weight))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x * self.inv_scale, self.weight, self.bias)


@dataclass
class SmoothGroup:
    """Linears that read the same tensor (they must share one ``s``), and the LayerNorm that
    produced it when the LayerNorm's output goes nowhere else (then ``s`` folds into it)."""

    linears: list[str]
    norm: str | None = None
    alpha: float | None = None  # chosen alpha, set by smooth_
    act_max: torch.Tensor | None = field(default=None, repr=False)


def find_groups(model: nn.Module, example: tuple[torch.Tensor, ...]) -> list[SmoothGroup]:
    """The Linears fed directly by a LayerNorm, grouped by that LayerNorm output, from the
    exported graph. ``norm`` is set only where folding is exact (no other consumer)."""
    program = export_program(model, example, what="SmoothQuant reads the model's graph with torch.export, which",
                             advice="Or set smoothquant: null.")
    params = program.graph_signature.inputs_to_parameters
    aten = torch.ops.aten
    linears: dict[torch.fx.Node, list[str]] = {}
    for node in program.graph.nodes:
        if node.target == aten.linear.default and node.args[1].name in params:
            linears.setdefault(node.args[0], []).append(params[node.args[1].name].removesuffix(".weight"))
    # A Linear called on two different tensors (shared weights) cannot take either's scale.
    calls = [n for names in linears.values() for n in names]
    groups = []
    for source, names in linears.items():
        norm_node, chain_private = _through_identities(source)
        if norm_node.target != aten.layer_norm.default or any(calls.count(n) > 1 for n in names):
            continue
        weight = norm_node.args[2] if len(norm_node.args) > 2 else None
        only_linears = chain_private and all(u.target == aten.linear.default and u.args[0] is source
                                             for u in source.users)
        norm = None
        if only_linears and weight is not None and getattr(weight, "name", None) in params:
            norm = params[weight.name].removesuffix(".weight")
        groups.append(SmoothGroup(linears=names, norm=norm))
    return groups


def _through_identities(node: torch.fx.Node) -> tuple[torch.fx.Node, bool]:
    """The node behind eval-mode dropouts (BERT's embedding LayerNorm -> dropout -> q/k/v), and
    whether each hop has that one consumer only (else a fold would change the other consumer)."""
    aten = torch.ops.aten
    private = True
    while node.target == aten.dropout.default and len(node.args) > 2 and node.args[2] is False:
        node = node.args[0]
        private = private and len(node.users) == 1
    return node, private


@torch.no_grad()
def _observe(model: nn.Module, groups: Sequence[SmoothGroup], batches) -> list[torch.Tensor]:
    """Per group: the per-channel max |x| over all batches (into ``act_max``) and a sample of
    input rows (returned) to score alphas on."""
    modules = dict(model.named_modules())
    samples: list[list[torch.Tensor]] = [[] for _ in groups]
    handles = []
    for i, group in enumerate(groups):
        def hook(_m, args, i=i, group=group):
            x = args[0].detach().flatten(0, -2).float()
            m = x.abs().amax(dim=0)
            group.act_max = m if group.act_max is None else torch.maximum(group.act_max, m)
            if sum(len(s) for s in samples[i]) < _SAMPLE_ROWS:
                samples[i].append(x[: _SAMPLE_ROWS].cpu())
        handles.append(modules[group.linears[0]].register_forward_pre_hook(hook))
    try:
        for args in batches:
            model(*args)
    finally:
        for h in handles:
            h.remove()
    return [torch.cat(s)[:_SAMPLE_ROWS] if s else torch.zeros(0) for s in samples]


def smoothing_scale(act_max: torch.Tensor, weights: Sequence[torch.Tensor], alpha: float) -> torch.Tensor:
    """``s_j = max|x_j|^alpha / max|W[:, j]|^(1-alpha)`` over all the group's weights; 1 where
    a channel is dead in either (nothing to balance)."""
    w_max = torch.stack([w.detach().abs().amax(dim=0).float() for w in weights]).amax(dim=0)
    a = act_max.float().to(w_max.device)
    s = a.pow(alpha) / w_max.pow(1 - alpha)
    ok = (a > 0) & (w_max > 0) & torch.isfinite(s)
    return torch.where(ok, s, torch.ones_like(s)).clamp(min=1e-5)


def _fake_int8_error(x: torch.Tensor, weights: Sequence[torch.Tensor], s: torch.Tensor) -> float:
    """Relative int8 error of the group's outputs once smoothed by ``s``: the kernel quantizes
    ``x / s`` and ``W * s`` (``torchslim.core.fake_int8``'s model), whose product is ``x W^T``."""
    return int8_output_error(x / s, [w.detach().float().cpu() * s for w in weights])


@torch.no_grad()
def smooth_(model: nn.Module, example: tuple[torch.Tensor, ...], batches, alpha: float | str) -> list[SmoothGroup]:
    """Smooth ``model`` in place (outputs unchanged in float up to rounding); returns the groups
    with the alpha each got. ``alpha`` is a number in [0, 1] or ``"auto"`` (per group, the
    grid value with the least int8 output error on the calibration rows)."""
    groups = find_groups(model, example)
    samples = _observe(model, groups, batches)
    modules = dict(model.named_modules())
    for group, x in zip(groups, samples, strict=True):
        weights = [modules[n].weight for n in group.linears]
        if group.act_max is None:
            continue
        grid = ALPHA_GRID if alpha == "auto" else (float(alpha),)
        errors = {a: _fake_int8_error(x, weights, smoothing_scale(group.act_max, weights, a).cpu()) for a in grid}
        group.alpha = min(errors, key=errors.get)
        _apply(model, modules, group, smoothing_scale(group.act_max, weights, group.alpha))
    return groups


def _apply(model: nn.Module, modules: dict[str, nn.Module], group: SmoothGroup, s: torch.Tensor) -> None:
    for name in group.linears:
        linear = modules[name]
        linear.weight.mul_(s.to(linear.weight))
    if group.norm is not None:
        norm = modules[group.norm]
        norm.weight.div_(s.to(norm.weight))
        if norm.bias is not None:
            norm.bias.div_(s.to(norm.bias))
        return
    for name in group.linears:
        owner, _, attr = name.rpartition(".")
        parent = model.get_submodule(owner) if owner else model
        setattr(parent, attr, SmoothedLinear(modules[name], 1.0 / s))
