"""The recipe step contract (pipeline/context.py) for ``quantize``."""

from __future__ import annotations

import torch.nn as nn

from torchslim.core.step import StepContext, StepOutput
from torchslim.quantize._api import apply, quantize_inputs
from torchslim.quantize._config import QuantizeConfig, parse_config

# The runtime on which each method's result is actually fast on an x86 CPU, and what to say
# where it is not; from benchmarks/quantize.py (docs/quantization.md has the table).
_FAST_RUNTIME = {
    "dynamic": "compile",
    "static": "compile",
    "qat": "compile",
    "weight-only": "compile",
    "int4": "eager",
    "bf16": "compile",
    "fp16": "compile",
}
_CPU_NOTES: dict[str, str] = {
    "dynamic": "dynamic int8 quantizes activations at every call; on a CPU without AVX-512 VNNI it "
               "measured slower than fp32 at batch 32 on tiny-transformer (benchmarks/quantize.py).",
    "weight-only": "weight-only int8 stores int8 weights but computes in float: on CPU it is smaller, "
                   "not reliably faster (measured in benchmarks/quantize.py).",
}


def _cpu_has_native_bf16() -> bool:
    """AMX or AVX-512 BF16: without them a bf16/fp16 cast is emulated and slower than fp32."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(next((line for line in f if line.startswith("flags")), "").split())
    except OSError:
        return False
    return bool(flags & {"amx_bf16", "avx512_bf16"})


def linear_share(model: nn.Module) -> float:
    """The fraction of the model's parameters held by nn.Linear layers."""
    total = sum(p.numel() for p in model.parameters())
    linear = sum(p.numel() for m in model.modules() if isinstance(m, nn.Linear) for p in m.parameters(recurse=False))
    return linear / total if total else 0.0


def fast_runtime(method: str, device_type: str = "cpu") -> str:
    """The runtime a ``method``'s artifact should run on to be fast on ``device_type``."""
    return _FAST_RUNTIME.get(method, "eager")


def validate_step(options: dict | str | None) -> QuantizeConfig:
    return parse_config(options, "quantize step")


def _smoothquant_note(groups) -> str:
    folded = sum(1 for g in groups if g.norm is not None)
    alphas = sorted({g.alpha for g in groups if g.alpha is not None})
    return (f"SmoothQuant on {sum(len(g.linears) for g in groups)} LayerNorm-fed Linear layers in {len(groups)} "
            f"groups (alpha {', '.join(f'{a:g}' for a in alphas) or 'n/a'}): {folded} folded into their LayerNorm, "
            f"{len(groups) - folded} with an explicit input multiply (their LayerNorm output also feeds a residual).")


def run_step(model: nn.Module, config: QuantizeConfig, ctx: StepContext) -> StepOutput:
    budget = ctx.max_accuracy_drop
    if getattr(config, "fallback", None) and budget is not None and budget < config.fallback_target_drop:
        # Never aim looser than the recipe's budget: a candidate outside it is discarded anyway.
        config = config.model_copy(update={"fallback_target_drop": budget})
    notes, facts = [], {}
    recurrent = sorted({type(m).__name__ for m in model.modules() if isinstance(m, (nn.LSTM, nn.GRU))}
                       - set(config.skip))
    if config.method == "dynamic" and recurrent:
        # torch.ao's int8 LSTM/GRU (the verb's path for them) holds TorchScript-packed weights that
        # torch.export cannot save, and a candidate's artifact is always saved: keep them in float.
        config = config.model_copy(update={"skip": (*config.skip, *recurrent)})
        notes.append(f"dynamic int8: {', '.join(recurrent)} layers kept in float (their only int8 path, torch.ao's, "
                     "cannot be saved with torch.export); the Linear layers are int8.")
    inputs = quantize_inputs(model, ctx.data, ctx.example_inputs, ctx.device, ctx.seed, ctx.log)
    quantized = apply(model, config, inputs)
    if split := getattr(quantized, "torchslim_split_attention", None):
        notes.append(f"{config.method}: nn.MultiheadAttention {', '.join(split)} ran as separate q/k/v/out Linear "
                     "layers (the same computation) so that its projections are quantized and the model exports.")
    if inputs.record.smoothquant:
        notes.append(_smoothquant_note(inputs.record.smoothquant))
    if inputs.record.fallback is not None:
        notes += inputs.record.fallback.notes()
        facts["fallback"] = inputs.record.fallback
    if ctx.device.type == "cpu" and config.method in _CPU_NOTES:
        notes.append(_CPU_NOTES[config.method])
    if ctx.device.type == "cpu" and config.method in ("bf16", "fp16") and not _cpu_has_native_bf16():
        notes.append(f"{config.method}: this CPU has no AMX/AVX-512 BF16 units, so half-precision math is "
                     "emulated; it halves the size but measured slower than fp32 here.")
    share = linear_share(model)
    if config.method in ("dynamic", "weight-only", "int4") and share < 0.5:
        notes.append(f"{config.method} quantizes Linear layers only, which hold {share:.0%} of this model's "
                     "weights: expect little size or speed gain; 'static' also quantizes convolutions.")
    return StepOutput(model=quantized, runtime=fast_runtime(config.method, ctx.device.type), notes=notes,
                      facts=facts)
