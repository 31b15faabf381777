"""The one ``torch.export`` wrapper: dynamic batch on every input, dynamic sequence on token inputs.

Every ``.pt2`` torchslim writes (the eager/compile ``.pt2``, the graph PT2E quantization starts
from, the AOTInductor package) and the ONNX export go through :func:`export_program` /
:func:`dynamic_shapes`, so every artifact takes the same shapes as the original model.

**Which input is a token input.** A rank-2 tensor of an integer dtype (int8..int64, uint8):
``input_ids``, ``attention_mask``, ``token_type_ids``. Its axis 1 is the sequence. Float and
bool inputs, and integer inputs of another rank, keep every axis but the batch static. All
token inputs share ONE sequence ``Dim`` (the mask must be as long as the ids), and every input
shares one batch ``Dim``.

**How long a sequence may be.** The model's own limit when it states one: the first
``config.max_position_embeddings`` (Hugging Face) or ``max_length`` attribute found on the
model or its submodules; else the example's length (nothing longer was ever seen to work).
``max_length=`` overrides both.

**Specialisation.** ``torch.export`` turns an axis of size 0 or 1 into a constant, and a size
the example shares with another axis can get unified with it; the example is therefore grown
to a batch of at least 2 and a sequence of at least :data:`MIN_EXPORT_LENGTH` (repeating its
last sample / last token, which only matters for tracing). A model whose code pins the
sequence (a learned position table added whole, ``x + self.pos``) cannot take a dynamic
sequence: the export is retried with that axis static, and :func:`dynamic_axes` reports what
the program really accepts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn

from torchslim.errors import ExportError

MAX_BATCH = 4096
MIN_EXPORT_LENGTH = 8  # exporting at length 1 or 2 risks specialisation; 8 is cheap to trace
_INT_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)

DynamicAxes = dict[int, tuple[int, int]]  # axis -> (min, max), both inclusive


def is_exported_graph(model) -> bool:
    """A torch.export-ed graph (e.g. a PT2E-prepared QAT model): its dropout and batch-norm are
    aten ops whose train/eval behaviour is baked in, so ``.train()`` cannot switch them."""
    from torch.export._unlift import _StatefulGraphModule

    if isinstance(model, _StatefulGraphModule):
        return True
    if isinstance(model, torch.fx.GraphModule):  # fx.symbolic_trace graphs call modules, not aten ops
        return any(n.op == "call_function" and isinstance(n.target, torch._ops.OpOverload) for n in model.graph.nodes)
    return False


def is_token_input(t: torch.Tensor) -> bool:
    """Token ids / attention masks / token type ids: rank 2, integer dtype; axis 1 is the sequence."""
    return isinstance(t, torch.Tensor) and t.dim() == 2 and t.dtype in _INT_DTYPES


def model_max_length(model: nn.Module) -> int | None:
    """The longest sequence the model states it takes (see the module docstring), or None."""
    for module in model.modules():
        config = getattr(module, "config", None)
        limit = getattr(config, "max_position_embeddings", None) if config is not None else None
        limit = limit or getattr(module, "max_length", None)
        if isinstance(limit, int) and limit > 0:
            return limit
    return None


def sequence_limit(model: nn.Module, example: tuple[torch.Tensor, ...], max_length: int | None = None) -> int:
    """The longest sequence to export for: ``max_length``, else the model's, else the example's."""
    if max_length is not None:
        return max_length
    longest = max((t.shape[1] for t in example if is_token_input(t)), default=1)
    stated = model_max_length(model)
    return stated if stated is not None else longest


def dynamic_shapes(example: tuple[torch.Tensor, ...], *, max_length: int | None = None,
                   dynamic_sequence: bool = True) -> tuple[dict[int, Any], ...]:
    """``dynamic_shapes`` for ``torch.export`` / ``torch.onnx.export``: one batch ``Dim`` for
    every input, one sequence ``Dim`` (1..``max_length``) for axis 1 of every token input."""
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    longest = max((t.shape[1] for t in example if is_token_input(t)), default=1)
    sequence = None
    if dynamic_sequence and any(is_token_input(t) for t in example):
        sequence = torch.export.Dim("sequence", min=1, max=max(max_length or longest, longest, 2))
    shapes = []
    for t in example:
        dims: dict[int, Any] = {0: batch}
        if sequence is not None and is_token_input(t):
            dims[1] = sequence
        shapes.append(dims)
    return tuple(shapes)


def exportable_example(example: tuple[torch.Tensor, ...], *, max_length: int | None = None) -> tuple[torch.Tensor, ...]:
    """The example grown so no dynamic axis is exported at a size torch.export specialises
    (token inputs to :data:`MIN_EXPORT_LENGTH`, or ``max_length`` if that is shorter)."""
    target = min(MIN_EXPORT_LENGTH, max_length or MIN_EXPORT_LENGTH)
    grown = []
    for t in example:
        if t.shape[0] < 2:
            t = torch.cat([t, t[-1:].expand(2 - t.shape[0], *t.shape[1:])])
        if is_token_input(t) and t.shape[1] < target:
            t = torch.cat([t, t[:, -1:].expand(t.shape[0], target - t.shape[1])], dim=1)
        grown.append(t.contiguous())
    return tuple(grown)


def export_program(model: nn.Module, example: tuple[torch.Tensor, ...], *, max_length: int | None = None,
                   what: str = "torch.export", advice: str = "",
                   context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
                   ) -> torch.export.ExportedProgram:
    """``torch.export`` ``model`` (in its current train/eval mode, without gradients) with a
    dynamic batch and, for token inputs, a dynamic sequence up to the model's maximum.

    ``what`` names the caller in the error, ``advice`` ends it; ``context`` wraps the export
    (e.g. a backend-silencing context). Raises ``ExportError`` when it cannot be captured."""
    example = tuple(t.detach() for t in example)
    limit = sequence_limit(model, example, max_length)
    example = exportable_example(example, max_length=limit)
    has_tokens = any(is_token_input(t) for t in example)
    attempts = [True, False] if has_tokens else [False]
    error: Exception | None = None
    for dynamic_sequence in attempts:
        shapes = dynamic_shapes(example, max_length=limit, dynamic_sequence=dynamic_sequence)
        try:
            with context(), torch.no_grad():
                return torch.export.export(model, example, dynamic_shapes=shapes, strict=False)
        except Exception as e:  # noqa: PERF203 - at most two attempts
            error = error or e
            if not _is_constraint_violation(e):
                break
    raise ExportError(
        f"{what} could not capture {type(model).__name__}: {_first_line(error)}. Models with data-dependent "
        "Python control flow, .item()/.numpy() calls or non-tensor outputs cannot be exported; rewrite that "
        f"part with tensor ops (torch.where, torch.cond).{' ' + advice if advice else ''}"
    ) from None


def _is_constraint_violation(error: Exception) -> bool:
    # A Dim the model's code pins (or bounds more tightly) raises a constraint violation; the
    # sequence axis is then retried static. Anything else is a real capture failure.
    return "Constraints violated" in str(error) or type(error).__name__ in {"ConstraintViolationError", "UserError"}


def _first_line(error: BaseException | None) -> str:
    text = str(error).strip() if error is not None else ""
    return text.splitlines()[0][:400] if text else type(error).__name__


def dynamic_axes(program: torch.export.ExportedProgram) -> list[DynamicAxes]:
    """Per user input of ``program``: the axes that take any size, with the (min, max) range the
    program guards. What the manifest records and what loading checks inputs against."""
    ranges = program.range_constraints
    signature = program.graph_signature
    user_inputs = set(signature.user_inputs)
    result: list[DynamicAxes] = []
    for node in program.graph.nodes:
        if node.op != "placeholder" or node.name not in user_inputs:
            continue
        value = node.meta.get("val")
        axes: DynamicAxes = {}
        for axis, size in enumerate(getattr(value, "shape", ())):
            if isinstance(size, torch.SymInt):
                bounds = ranges.get(size.node.expr)
                low = int(bounds.lower) if bounds is not None else 1
                high = int(bounds.upper) if bounds is not None and bounds.upper.is_finite else MAX_BATCH
                axes[axis] = (max(low, 1), high)
        result.append(axes)
    return result


def output_sequence_axes(program: torch.export.ExportedProgram) -> list[bool]:
    """Per flattened output: whether its axis 1 is the (dynamic) sequence of the token inputs,
    i.e. whether a runtime that pads the sequence must slice that output back."""
    sequence_symbols = set()
    user_inputs = set(program.graph_signature.user_inputs)
    for node in program.graph.nodes:
        value = node.meta.get("val")
        if node.op == "placeholder" and node.name in user_inputs and getattr(value, "dim", lambda: 0)() == 2:
            if isinstance(value.shape[1], torch.SymInt) and not value.dtype.is_floating_point:
                sequence_symbols.add(value.shape[1].node.expr)
    output = next(n for n in program.graph.nodes if n.op == "output")
    user_outputs = len(program.graph_signature.user_outputs)
    flags = []
    for arg in torch.utils._pytree.tree_leaves(output.args[0])[-user_outputs:] if user_outputs else []:
        value = arg.meta.get("val") if isinstance(arg, torch.fx.Node) else None
        shape = getattr(value, "shape", ())
        flags.append(len(shape) > 1 and isinstance(shape[1], torch.SymInt) and shape[1].node.expr in sequence_symbols)
    return flags


def sequence_buckets(max_length: int, *, smallest: int = 16) -> list[int]:
    """The lengths a per-shape runtime compiles: powers of two from ``smallest``, then the maximum."""
    buckets, length = [], smallest
    while length < max_length:
        buckets.append(length)
        length *= 2
    return [*buckets, max_length]


__all__ = ["MAX_BATCH", "DynamicAxes", "dynamic_axes", "dynamic_shapes", "export_program", "exportable_example",
           "is_token_input", "model_max_length", "output_sequence_axes", "sequence_buckets",
           "sequence_limit"]
