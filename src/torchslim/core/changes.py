"""What a step did to the model's layers, found by comparing the model before and after it.

The diff needs nothing from the technique, so it covers plug-ins too: a parameter that got
smaller is a pruned layer (``out_features 64 -> 32``), one with more zeros a sparsified layer,
one whose values collapsed to a few distinct ones a shared layer, one stored in int8 (or as a
quantized tensor subclass, or a quantized module) a quantized layer, a Linear/Conv replaced by
two thinner ones a factorized layer (its rank). Techniques add what a diff cannot see, e.g.
the layers accuracy-aware fallback kept in float (``StepOutput.changes``).

Cost: one pass over the parameters before and after each step (a zero count and a checksum
per tensor); distinct values are only counted for a tensor whose values changed, and at most
the first ``_UNIQUE_LIMIT`` elements of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

_UNIQUE_LIMIT = 1 << 20  # elements of one tensor whose distinct values are counted (a sort: ~50 ms)
_SHARED_VALUES = 256  # at most this many distinct values: the weights were shared (clustered)
_PER_VALUE = 4  # at least this many weights per distinct value to call a layer shared
_MAX_LISTED = 200  # changes kept per step; beyond that one summary line says how many more


@dataclass(frozen=True)
class LayerChange:
    """One layer's change: ``kind`` is one of KINDS; ``detail`` says it in a few words."""

    layer: str  # the module's path in the model ("" for the model as a whole)
    kind: str
    detail: str


# What each kind means, for the report's readers.
KINDS = {
    "pruned": "structurally smaller: channels, features or heads removed",
    "sparsified": "same shape, more weights set to zero",
    "shared": "weights clustered to a few distinct values",
    "quantized": "weights stored in a low-precision integer format",
    "kept_float": "left in floating point on purpose (e.g. by accuracy-aware fallback)",
    "cast": "weights stored in another floating-point type (bf16, fp16)",
    "factorized": "replaced by a product of thinner layers (low rank)",
    "replaced": "replaced by another kind of module",
    "removed": "no longer in the model",
    "converted": "the model as a whole was rewritten (e.g. captured as a graph)",
    "summary": "more layers than the report lists",
}


@dataclass(frozen=True)
class _Tensor:
    shape: tuple[int, ...]
    dtype: str
    kind: str  # "Tensor", or the name of a tensor subclass (torchao's quantized tensors)
    zeros: float  # fraction of elements that are exactly zero (-1 when it cannot be read)
    checksum: float


@dataclass(frozen=True)
class _Layer:
    type: str
    sizes: dict[str, object]  # the module's own size attributes (out_features, num_heads, ...)
    tensors: dict[str, _Tensor]


_SIZE_ATTRS = ("in_features", "out_features", "in_channels", "out_channels", "groups", "embed_dim", "num_heads",
               "num_features", "normalized_shape", "embedding_dim", "num_embeddings", "hidden_size", "input_size")


def _tensor(t: torch.Tensor) -> _Tensor:
    kind = type(t.data if isinstance(t, nn.Parameter) else t).__name__
    kind = "Tensor" if kind in ("Tensor", "Parameter") else kind
    try:
        plain = t.detach()
        if kind == "Tensor" and plain.is_floating_point() and plain.numel():
            zeros = float((plain == 0).sum()) / plain.numel()
            checksum = float(plain.abs().sum(dtype=torch.float64))
        else:
            zeros, checksum = -1.0, 0.0
    except Exception:  # noqa: BLE001  (a tensor subclass without these ops: shape and type still tell)
        zeros, checksum = -1.0, 0.0
    return _Tensor(tuple(t.shape), str(t.dtype).removeprefix("torch."), kind, zeros, checksum)


def snapshot(model: nn.Module) -> dict[str, _Layer]:
    """Every module holding parameters or buffers of its own, by its path."""
    layers = {}
    for name, module in model.named_modules():
        own = dict(module.named_parameters(recurse=False))
        if name == "" and own:  # the model's own parameters (a class token, positions): one layer each
            layers.update((n, _Layer("Parameter", {}, {n: _tensor(p)})) for n, p in own.items())
            continue
        if not own and not _is_quantized_module(module):
            continue
        own.update((n, b) for n, b in module.named_buffers(recurse=False) if b.dtype in (torch.int8, torch.uint8))
        sizes = {a: getattr(module, a) for a in _SIZE_ATTRS if isinstance(getattr(module, a, None), (int, tuple))}
        layers[name] = _Layer(type(module).__name__, sizes, {n: _tensor(t) for n, t in own.items() if t is not None})
    return layers


def _is_quantized_module(module: nn.Module) -> bool:
    return "quantized" in type(module).__module__ or "Quantized" in type(module).__name__


def diff(before: dict[str, _Layer], after_model: nn.Module, after: dict[str, _Layer] | None = None) -> list[LayerChange]:
    """The layer changes from ``before`` (a snapshot) to ``after_model``."""
    if isinstance(after_model, torch.fx.GraphModule):
        graph = _graph_changes(before, after_model)
        if graph is not None:
            return graph
    after = snapshot(after_model) if after is None else after
    paths = {".".join(n.split(".")[:i]) for n in after for i in range(1, n.count(".") + 2)}
    if before and not set(before) & paths:  # no layer kept its path: rewritten as a whole
        return [_converted(after_model, after)]
    modules = dict(after_model.named_modules())
    changes: list[LayerChange] = []
    for name, old in before.items():
        new = after.get(name)
        if new is None:
            change = _gone(name, old, modules, after)
        elif new.type != old.type:
            change = _retyped(name, old, new, modules)
        else:
            change = _same_type(name, old, new, modules.get(name))
        if change is not None:
            changes.append(change)
    for name, new in after.items():  # layers a step put in place of another (a split attention's q/k/v)
        if name not in before and (stored := _stored_quantized(new)) is not None:
            changes.append(LayerChange(name, "quantized", f"new {new.type}, {stored}"))
    if len(changes) > _MAX_LISTED:
        rest = len(changes) - _MAX_LISTED
        changes = [*changes[:_MAX_LISTED], LayerChange("", "summary", f"{rest} more layers changed")]
    return changes


_WEIGHTED_OPS = ("conv", "linear", "matmul", "addmm", "mm", "bmm", "embedding")


def _graph_changes(before: dict[str, _Layer], gm: torch.fx.GraphModule) -> list[LayerChange] | None:
    """A PT2E-style graph: each weighted op's weight is int8 behind a dequantize, or float.

    The layer is the op's innermost ``nn_module_stack`` entry; a layer of ``before`` no op
    belongs to any more was folded into its neighbour (BatchNorm into its convolution).
    """
    state: dict[str, str] = {}
    for node in gm.graph.nodes:
        if node.op != "call_function" or len(node.args) < 2:
            continue
        op = str(node.target).split(".")[1] if "." in str(node.target) else str(node.target)
        stack = node.meta.get("nn_module_stack") or {}
        if not stack or not any(w in op for w in _WEIGHTED_OPS) or "quantize" in op:
            continue
        layer = list(stack.values())[-1][0]
        weight = node.args[1] if isinstance(node.args[1], torch.fx.Node) else None
        if weight is None:
            continue
        if weight.op == "call_function" and "dequantize" in str(weight.target):
            state[layer] = "int8"
        elif weight.op == "get_attr" and layer not in state:
            state[layer] = "float"
    if "int8" not in state.values():  # a float graph (an exported program): the name diff says more
        return None
    seen = {list(n.meta["nn_module_stack"].values())[-1][0] for n in gm.graph.nodes if n.meta.get("nn_module_stack")}
    changes = [LayerChange(layer, "quantized" if how == "int8" else "kept_float",
                           "int8 weights behind a dequantize in the graph" if how == "int8"
                           else "weights left in float by the quantizer")
               for layer, how in state.items()]
    changes += [LayerChange(name, "removed", f"{old.type} folded into the layer before it" if "Norm" in old.type
                            else f"{old.type}: not in the graph any more")
                for name, old in before.items() if old.type != "Parameter" and name not in seen and name not in state
                and not _inside(name, state)]
    return changes


def _inside(name: str, layers) -> bool:
    """Whether an ancestor of ``name`` is in ``layers`` (MultiheadAttention runs its out_proj itself)."""
    parts = name.split(".")
    return any(".".join(parts[:i]) in layers for i in range(1, len(parts)))


def _converted(model: nn.Module, after: dict[str, _Layer]) -> LayerChange:
    low = [t.dtype for layer in after.values() for t in layer.tensors.values() if t.dtype in ("int8", "uint8", "qint8")]
    extra = f", {len(low)} int8 tensors" if low else ""
    return LayerChange("", "converted", f"rewritten as {type(model).__name__}{extra}")


def _factor_rank(module: nn.Module | None) -> int | None:
    """The rank of a module that is a chain of thinner Linear/Conv layers (a factorization)."""
    if module is None:
        return None
    inner = [m for m in module.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]
    if len(inner) < 2:
        return None
    widths = [m.out_features if isinstance(m, nn.Linear) else m.out_channels for m in inner[:-1]]
    return min(widths)


def _stored_quantized(layer: _Layer) -> str | None:
    """How a layer's weight is stored when it is quantized (a tensor subclass or an int dtype)."""
    weight = layer.tensors.get("weight")
    if weight is None:
        return None
    if weight.kind != "Tensor":
        return f"weight stored as {weight.kind} (a quantized tensor)"
    return f"weight stored as {weight.dtype}" if weight.dtype in ("int8", "uint8", "qint8", "quint8", "int4") else None


def _low(rank: int, old: _Layer) -> bool:
    """A chain is a factorization only below the full rank: nn.MultiheadAttention run as four
    64x64 Linears (quantize's split) is the same layer in other modules, not a low-rank one."""
    weight = old.tensors.get("weight") or next(iter(old.tensors.values()), None)
    return weight is None or len(weight.shape) < 2 or rank < min(weight.shape[:2])


def _shape(layer: _Layer) -> str:
    weight = layer.tensors.get("weight") or next(iter(layer.tensors.values()), None)
    return "x".join(map(str, weight.shape)) if weight else "?"


def _gone(name: str, old: _Layer, modules: dict[str, nn.Module], after: dict[str, _Layer]) -> LayerChange | None:
    children = [n for n in after if n.startswith(name + ".")]
    if name in modules and children:  # it now holds its weights in sub-modules
        rank = _factor_rank(modules[name])
        if rank is not None and _low(rank, old):
            return LayerChange(name, "factorized", f"{old.type} {_shape(old)} -> rank {rank} "
                                                   f"({' + '.join(_shape(after[c]) for c in children)})")
        return LayerChange(name, "replaced", f"{old.type} -> {type(modules[name]).__name__}")
    if name in modules:
        return None  # a module that lost its own weights to a parent (tied/moved): nothing a user removed
    return LayerChange(name, "removed", f"{old.type} {_shape(old)}")


def _retyped(name: str, old: _Layer, new: _Layer, modules: dict[str, nn.Module]) -> LayerChange:
    module = modules.get(name)
    if module is not None and _is_quantized_module(module):
        return LayerChange(name, "quantized", f"{old.type} -> {new.type}")
    if (stored := _stored_quantized(new)) is not None:
        return LayerChange(name, "quantized", f"{old.type} -> {new.type}, {stored}")
    rank = _factor_rank(module)
    if rank is not None and _low(rank, old):
        return LayerChange(name, "factorized", f"{old.type} {_shape(old)} -> rank {rank}")
    return LayerChange(name, "replaced", f"{old.type} -> {new.type}")


def _same_type(name: str, old: _Layer, new: _Layer, module: nn.Module | None) -> LayerChange | None:
    sizes = [f"{k} {old.sizes[k]} -> {v}" for k, v in new.sizes.items() if k in old.sizes and old.sizes[k] != v]
    shapes = [f"{n} {'x'.join(map(str, t.shape))} -> {'x'.join(map(str, new.tensors[n].shape))}"
              for n, t in old.tensors.items() if n in new.tensors and new.tensors[n].shape != t.shape]
    if sizes or shapes:
        return LayerChange(name, "pruned", ", ".join(sizes or shapes))
    for n, t in old.tensors.items():
        now = new.tensors.get(n)
        if now is None:
            continue
        if now.kind != t.kind:
            return LayerChange(name, "quantized", f"{n} stored as {now.kind} (a quantized tensor)")
        if now.dtype != t.dtype:
            kind = "cast" if now.dtype in ("bfloat16", "float16") else "quantized"
            return LayerChange(name, kind, f"{n} {t.dtype} -> {now.dtype}")
    weight, now = old.tensors.get("weight"), new.tensors.get("weight")
    if weight is None or now is None or now.zeros < 0 or now.checksum == weight.checksum or len(now.shape) < 2:
        return None  # unchanged, unreadable, or a norm's scale vector (retrained, never pruned or shared)
    if now.zeros - weight.zeros > 0.01:
        return LayerChange(name, "sparsified", f"{now.zeros:.1%} of weights zero (was {weight.zeros:.1%})")
    values = _distinct(getattr(module, "weight", None)) if module is not None else None
    # A small tensor has few distinct values anyway: shared means several weights per value.
    if values is not None and values <= _SHARED_VALUES and values * _PER_VALUE <= math.prod(now.shape):
        return LayerChange(name, "shared", f"weights take {values} distinct values")
    return None  # only retrained (distillation, fine-tuning): not a change of the layer's form


def _distinct(weight) -> int | None:
    if not isinstance(weight, torch.Tensor) or not weight.is_floating_point():
        return None
    flat = weight.detach().reshape(-1)
    if torch.unique(flat[:4096]).numel() > _SHARED_VALUES + 1:  # most retrained layers stop here, cheaply
        return None
    flat = flat[:_UNIQUE_LIMIT]
    return int(torch.unique(flat[flat != 0]).numel())


def step_changes(before: dict[str, _Layer] | None, output, after: dict[str, _Layer] | None = None) -> list[LayerChange]:
    """What one step did: the diff of its model against ``before``, the technique's own
    ``output.changes``, and the layers accuracy-aware fallback kept in float (``facts``)."""
    changes = diff(before, output.model, after) if before is not None and isinstance(output.model, nn.Module) else []
    changes += [c for c in output.changes if c not in changes]
    kept = (output.facts.get("fallback") or {}).get("kept_in_float") or []
    changes = [c for c in changes if not (c.layer in kept and c.kind in ("quantized", "kept_float"))]
    changes += [LayerChange(layer, "kept_float", "kept in float by accuracy-aware fallback") for layer in kept]
    return changes
