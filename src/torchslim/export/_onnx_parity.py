"""An ONNX artifact must match PyTorch under ONNX Runtime before it is written (every ONNX
writer: plain export, ORT quantization, the fused-encoder path)."""

from __future__ import annotations

from pathlib import Path

import torch

from torchslim.errors import ExportError
from torchslim.export import _common as common


def check_parity(path: Path, batches: list[tuple[torch.Tensor, ...]], references: list[tuple[torch.Tensor, ...]],
                 precision: str, model_name: str, *, enforce: bool = True) -> common.Parity:
    """Run ``path`` under ONNX Runtime on every batch; ExportError when it fails or diverges
    (``enforce=False``: a divergence is recorded in the returned parity, not raised)."""
    from torchslim.runtime.onnxrt import OnnxModel, make_session

    model = OnnxModel(make_session(path))
    worst: common.Parity | None = None
    for batch, reference in zip(batches, references, strict=True):
        try:
            out = model(*batch)
        except Exception as e:
            raise ExportError(
                f"The ONNX model of {model_name} fails under ONNX Runtime on a batch of {len(batch[0])} (the export "
                f"example had {len(batches[0][0])}): {common.exporter_reason(e)}. The model's code probably takes a "
                "size from a constant or from Python instead of the tensor (x.shape), so the exporter baked it in."
            ) from None
        parity = common.compare(reference, out if isinstance(out, tuple) else (out,), precision)
        if not enforce and not parity.ok:
            parity.tolerance += " (not enforced: accuracy-aware fallback measured the metric within its target)"
        elif not parity.ok:
            raise ExportError(
                f"The ONNX model of {model_name} does not match PyTorch on a batch of {len(batch[0])}: "
                f"{parity.describe()}. " + ("An fp32 mismatch is an exporter bug or a model that reads non-tensor "
                                             "state at run time." if precision == "fp32" else
                                             "This model loses too much in int8; try static quantization with "
                                             "fallback: auto (the most sensitive layers stay in float), or keep "
                                             "it in fp32.")
            )
        if worst is None or parity.max_abs_diff > worst.max_abs_diff:
            worst = parity
    assert worst is not None
    return worst
