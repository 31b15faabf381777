"""Shared pieces of every exporter: output paths, calibration batches,
output parity, and turning an exporter's exception into one readable paragraph."""

from __future__ import annotations

import contextlib
import io
import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from torchslim.core.export import exportable_example, is_token_input
from torchslim.data import Signature, calibration_batches, signature_of  # noqa: F401 (one home: data/)
from torchslim.errors import ConfigError

# format -> (runtime that runs it, file suffix). "aoti" is the manifest's name for a pt2 package.
FORMATS: dict[str, tuple[str, str]] = {
    "onnx": ("onnxruntime", ".onnx"),
    "pt2": ("aoti", ".pt2"),
    "tensorrt": ("tensorrt", ".engine"),
    "openvino": ("openvino", ".xml"),  # the graph; its weights are the .bin beside it
}
RUNTIME_TO_FORMAT = {runtime: fmt for fmt, (runtime, _) in FORMATS.items()}
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


# format -> (quantize methods it takes, precisions it takes)
_ALLOWED = {
    "onnx": ({"none", "dynamic", "static"}, {"fp32", "int8"}),
    "pt2": ({"none"}, {"fp32"}),
    "tensorrt": ({"none", "static"}, {"fp32", "fp16", "int8"}),
    "openvino": ({"none", "static"}, {"fp32", "bf16", "int8"}),  # static = NNCF post-training int8
}


def check_combination(format: str, quantize: str, precision: str | None) -> tuple[str, str]:
    """Validate (format, quantize, precision) and fill what follows from the others; returns
    (quantize, precision). int8 ONNX comes from a quantize method; int8 TensorRT is static QDQ."""
    methods, precisions = _ALLOWED[format]
    if quantize == "int8":  # OpenVINO's one int8 method (NNCF, calibrated) spelled by its result
        if format != "openvino":
            raise ConfigError(f"quantize 'int8' is OpenVINO's NNCF quantization; for format {format!r} use "
                              "dynamic or static.")
        quantize = "static"
    if quantize not in {"none", "dynamic", "static"}:
        raise ConfigError(f"quantize {quantize!r}: use none, dynamic or static (openvino: int8).")
    if precision is not None and precision not in {"fp32", "fp16", "bf16", "int8"}:
        raise ConfigError(f"precision {precision!r}: use fp32, fp16, bf16 or int8.")
    if format == "tensorrt" and (quantize == "static" or precision == "int8"):
        quantize, precision = "static", "int8"
    if precision is None:
        precision = "int8" if quantize != "none" else "fp32"
    if quantize not in methods:
        hint = {"pt2": "quantize the model first with a quantize step (it compiles the quantized model)",
                "tensorrt": "TensorRT has no dynamic quantization; use static (int8) or precision fp16",
                "openvino": "OpenVINO int8 is NNCF post-training quantization, calibrated: use quantize int8"}[format]
        raise ConfigError(f"Export format {format!r} does not take quantize {quantize!r}: {hint}.")
    if precision not in precisions:
        raise ConfigError(f"Export format {format!r} does not take precision {precision!r} "
                          f"(it takes {', '.join(sorted(precisions))}); fp16 engines need format tensorrt, "
                          "bf16 format openvino.")
    if format in ("onnx", "openvino") and (precision == "int8") != (quantize != "none"):
        raise ConfigError("For ONNX, int8 precision comes from quantize: dynamic or static (and a quantized "
                          f"model is int8); got quantize {quantize!r} with precision {precision!r}.")
    return quantize, precision


def check_tuning(format: str, quantize: str, tuned: bool) -> None:
    """``smoothquant`` and ``fallback`` tune a calibrated int8: ONNX Runtime static or NNCF."""
    if tuned and (format, quantize) not in {("onnx", "static"), ("openvino", "static")}:
        raise ConfigError("smoothquant and fallback are options of calibrated int8: ONNX Runtime static (format "
                          "onnx, quantize static) or OpenVINO's NNCF int8 (format openvino, quantize int8); got "
                          f"format {format!r}, quantize {quantize!r}.")


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


def resolve_format(format: str | None, runtime: str | None) -> str:
    """The export format asked for by ``format`` or by the ``runtime`` that should run it."""
    if format == "aoti":
        format = "pt2"
    if format is not None and format not in FORMATS:
        raise ConfigError(f"Unknown export format {format!r}. Use one of: {', '.join(FORMATS)}.")
    if runtime is not None and runtime not in RUNTIME_TO_FORMAT:
        raise ConfigError(
            f"Runtime {runtime!r} does not run an exported file. Exportable runtimes: "
            f"{', '.join(RUNTIME_TO_FORMAT)} (eager and compile use torchslim.artifacts.save_exported)."
        )
    if format is None:
        return RUNTIME_TO_FORMAT[runtime or "onnxruntime"]
    if runtime is not None and RUNTIME_TO_FORMAT[runtime] != format:
        raise ConfigError(f"Format {format!r} runs on {FORMATS[format][0]!r}, not on runtime {runtime!r}.")
    return format


def output_path(out: str | Path, format: str) -> Path:
    """``out`` is a file (its suffix names the format) or a folder that gets ``model<suffix>``."""
    out = Path(out)
    suffix = FORMATS[format][1]
    if out.suffix in {s for _, s in FORMATS.values()}:
        if out.suffix != suffix:
            raise ConfigError(f"Output {str(out)!r} has suffix {out.suffix!r}, but format {format!r} writes {suffix!r} files.")
        return out
    return out / f"model{suffix}"


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
