"""Shared pieces of every exporter: calibration batches, output parity, and turning an
exporter's exception into one readable paragraph (output paths: ``_formats.output_path``)."""

from __future__ import annotations

import contextlib
import io
import logging
import re
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn as nn

from torchslim.core.export import exportable_example, is_token_input
from torchslim.data import Signature, calibration_batches, signature_of  # noqa: F401 (one home: data/)

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def weight_layers(model: nn.Module) -> tuple[list[str], dict[str, str]]:
    """The Linear/Conv layers of ``model`` (module order), and BatchNorm -> the Conv just before it
    in the same parent: exporters fold an eval-mode BatchNorm into that Conv, and the fused op
    then carries the BatchNorm's module path, not the Conv's."""
    kinds = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
    modules = list(model.named_modules())
    layers = [name for name, m in modules if isinstance(m, kinds)]
    folded = {name: before for (before, m0), (name, m) in zip(modules, modules[1:], strict=False)
              if isinstance(m, nn.modules.batchnorm._BatchNorm) and isinstance(m0, kinds)
              and before.rpartition(".")[0] == name.rpartition(".")[0]}
    return layers, folded


def batch_of_two(example_inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """The example grown so exporters keep its dynamic axes symbolic (torchslim.core.export)."""
    return exportable_example(example_inputs)


def flatten_outputs(out: Any) -> tuple[torch.Tensor, ...]:
    """A model's outputs in the order exporters flatten them (pytree order)."""
    leaves, _ = torch.utils._pytree.tree_flatten(out)
    return tuple(t for t in leaves if isinstance(t, torch.Tensor))


@contextlib.contextmanager
def quiet():
    """Silence exporters and the quantizers (ORT, NNCF): they print graphs and advice to
    stdout/stderr and the root logger. What they print is lost; failures keep their exception text."""
    names = ["", "torch.onnx", "torch.export", "torch._export", "torch.fx", "torch._dynamo", "onnxscript", "torch._inductor",
             "nncf"]  # nncf logs through a handler bound to the real stderr: redirecting does not catch it
    # ORT's pre-processor logs a full traceback at ERROR for failures we catch and recover from.
    silenced = ["onnxruntime"]
    levels = {n: logging.getLogger(n).level for n in names + silenced}
    for n in names:
        logging.getLogger(n).setLevel(logging.ERROR)
    for n in silenced:
        logging.getLogger(n).setLevel(logging.CRITICAL + 1)
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            yield
    finally:
        for n, level in levels.items():
            logging.getLogger(n).setLevel(level)


def exporter_reason(error: BaseException) -> str:
    """The first meaningful line of an exporter's (long, multi-section) error, plus the user's
    line of code that triggered it when the exporter names one; one line, no ANSI codes."""
    text = _ANSI.sub("", str(error))
    root = error
    for _ in range(8):
        if root.__cause__ is None:
            break
        root = root.__cause__
    candidates = [_ANSI.sub("", str(root))] if root is not error else []
    summary = text.split("## Exception summary", 1)
    if len(summary) == 2:
        candidates.append(summary[1])
    candidates.append(text)
    reason = ""
    for candidate in candidates:
        lines = [ln.strip() for ln in candidate.strip().splitlines() if ln.strip()]
        if lines:
            reason = re.sub(r"^<class '([\w.]+)'>:\s*", lambda m: m.group(1).rsplit(".", 1)[-1] + ": ", lines[0])
            break
    if root is not error and not reason.startswith(type(root).__name__):
        reason = f"{type(root).__name__}: {reason}"
    reason = reason or type(error).__name__
    where = re.search(r"The following call raised this error:\s*\n\s*(File .*?)\n\s*(\S.*?)\n", text)
    if where:
        reason += f" (raised at {where.group(1).strip()}: `{where.group(2).strip()}`)"
    return " ".join(reason.split())


def calibration_samples(batches: list[tuple[torch.Tensor, ...]], names: list[str]) -> list[tuple[torch.Tensor, ...]]:
    """One item per sample, as NNCF counts them (its ``subset_size`` is in items). With an
    ``attention_mask`` input, each sentence's token inputs are cut to its own length: padding
    is what a served sentence does not have, and its activations would widen the ranges."""
    mask_at = names.index("attention_mask") if "attention_mask" in names else None
    samples = []
    for batch in batches:
        for row in range(len(batch[0])):
            sample = tuple(t[row:row + 1] for t in batch)
            if mask_at is not None:
                n = max(1, int(sample[mask_at].sum()))
                sample = tuple(t[:, :n] if is_token_input(t) and t.dim() == 2 else t for t in sample)
            samples.append(sample)
    return samples


@dataclass
class Parity:
    """How close an artifact's outputs are to the PyTorch model's, on the example inputs and on a
    batch of another size (which also proves the batch axis is really dynamic)."""

    max_abs_diff: float
    cosine: float  # mean over samples of the cosine similarity of their flattened outputs
    worst_cosine: float  # the least similar sample
    tolerance: str
    ok: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        return (f"max |diff| {self.max_abs_diff:.3g}, mean cosine {self.cosine:.5f} (worst sample "
                f"{self.worst_cosine:.4f}); tolerance: {self.tolerance}")


# Stated tolerances. fp32 artifacts must match to float rounding (ORT fuses and reorders ops,
# so bit-exactness is not expected); reduced precision is judged by the mean per-sample cosine
# of the outputs, since int8 logits legitimately move by a few percent while the argmax stays.
FP32_ATOL, FP32_RTOL = 1e-4, 1e-3
MIN_COSINE = {"fp16": 0.999, "bf16": 0.99, "int8": 0.98}


def parity_inputs(example_inputs: tuple[torch.Tensor, ...]) -> list[tuple[torch.Tensor, ...]]:
    """The example batch, and a reordered batch one sample larger."""
    other = tuple(torch.cat([t.flip(0), t[:1]]) for t in example_inputs)
    return [example_inputs, other]


def compare(reference: tuple[torch.Tensor, ...], actual: tuple[torch.Tensor, ...], precision: str) -> Parity:
    if len(reference) != len(actual) or any(r.shape != a.shape for r, a in zip(reference, actual, strict=False)):
        return Parity(float("inf"), 0.0, 0.0, "same number and shapes of outputs", False)
    max_diff, scale, cosines = 0.0, 0.0, []
    for ref, out in zip(reference, actual, strict=True):
        ref, out = ref.detach().float().cpu(), out.detach().float().cpu()
        if ref.numel():
            max_diff = max(max_diff, float((ref - out).abs().max()))
            scale = max(scale, float(ref.abs().max()))
            flat = (ref.reshape(len(ref), -1), out.reshape(len(out), -1)) if ref.dim() else (ref.reshape(1, 1), out.reshape(1, 1))
            cosines.append(torch.nn.functional.cosine_similarity(*flat, dim=1, eps=1e-12))
    cosine = torch.cat(cosines) if cosines else torch.ones(1)
    mean_cosine, worst_cosine = float(cosine.mean()), float(cosine.min())
    if precision == "fp32":
        bound = FP32_ATOL + FP32_RTOL * scale
        return Parity(max_diff, mean_cosine, worst_cosine, f"max |diff| <= {bound:.3g} (1e-4 + 1e-3 x max |output|)",
                      max_diff <= bound)
    threshold = MIN_COSINE[precision]
    return Parity(max_diff, mean_cosine, worst_cosine, f"mean cosine >= {threshold} ({precision})", mean_cosine >= threshold)


@torch.no_grad()
def reference_outputs(module: nn.Module, batches: list[tuple[torch.Tensor, ...]]) -> list[tuple[torch.Tensor, ...]]:
    return [flatten_outputs(module(*batch)) for batch in batches]


@contextlib.contextmanager
def eval_mode(module: nn.Module):
    """Export in eval mode, then give the caller's module its mode back."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)
