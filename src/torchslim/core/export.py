"""The one ``torch.export`` helper every format builds on."""

from __future__ import annotations

import torch
import torch.nn as nn

from torchslim.errors import ExportError


def export_program(model: nn.Module, example_inputs: tuple[torch.Tensor, ...], *, dynamic_batch: bool = True):
    """``torch.export`` with a dynamic batch dimension on every input."""
    model.eval()
    dynamic_shapes = None
    if dynamic_batch:
        batch = torch.export.Dim("batch", min=1, max=4096)
        dynamic_shapes = tuple({0: batch} for _ in example_inputs)
    # Export with a batch of at least 2: a batch of 1 gets specialized to a constant.
    example_inputs = tuple(t if t.shape[0] > 1 else torch.cat([t, t]) for t in example_inputs)
    try:
        with torch.no_grad():
            return torch.export.export(model, example_inputs, dynamic_shapes=dynamic_shapes, strict=False)
    except Exception as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExportError(
            f"torch.export could not capture {type(model).__name__}: {first_line}. Models with "
            "data-dependent Python control flow or non-tensor outputs cannot be exported; "
            "rewrite that part with tensor ops or torch.cond."
        ) from None
