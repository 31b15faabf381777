"""NNCF int8 for the OpenVINO export, with SmoothQuant and accuracy-aware per-layer fallback.

- ``nncf.quantize`` on the converted ``ov.Model``, calibrated one sample at a time
  (``common.calibration_samples``: token models one sentence at its own length), with
  ``ModelType.TRANSFORMER`` for models with token inputs.
- SmoothQuant (``smoothquant``). NNCF (3.4 here) has its own, which it runs only for
  ``ModelType.TRANSFORMER`` and there by default (``AdvancedSmoothQuantParameters(matmul=0.95)``;
  ``smooth_quant_alpha`` is its deprecated spelling). So ``None`` keeps NNCF's default, which
  is what this export always did; a number is NNCF's MatMul alpha (a model without token inputs
  gets none: NNCF does not run it, and the manifest says so). ``"auto"``: NNCF picks no alpha
  inside ``nncf.quantize`` (its alpha search belongs to the experimental
  ``quantize_with_tune_hyperparams``, which also retunes presets, ranges and bias correction,
  one full quantization per grid point), so ``auto`` is torchslim's SmoothQuant
  (``torchslim.quantize._smooth``: alpha per layer from a grid, by the measured int8 error)
  on a copy of the torch model before the conversion, as the ONNX path does, with NNCF's own
  switched off so that nothing is smoothed twice. The manifest's ``quantization.smoothing``
  says what was applied and by which.
- Fallback (``fallback="auto"``): ``torchslim.quantize._fallback.fallback_search`` over NNCF
  runs. Quantize everything and measure the metric on the validation split through the
  compiled model; while outside the target, requantize with the layers that cost the most
  (ranked on the torch model by ``rank_layers``) left in float through
  ``nncf.IgnoredScope(names=...)``, one at a time; a layer that does not help goes back to
  int8. Every try recalibrates (NNCF keeps no statistics between calls): a few seconds each
  on the zoo models.

Torch layers are found in the ``ov.Model`` by friendly name: ``openvino.convert_model`` names
the ops of a module ``__module.<module path>/aten::<op>/<Type>``, e.g.
``__module.encoder.layer.0.attention.self.query/aten::linear/MatMul``. A Conv followed by an
eval-mode BatchNorm is fused with the BatchNorm's scale during the conversion and comes out
named after that multiply (``Multiply_4710``); it is the Convolution whose consumer carries the
BatchNorm's path. NNCF matches ``IgnoredScope.names`` exactly against these friendly names
(``nncf.scopes.get_matched_ignored_scope_info``) and refuses a name it does not find.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from torchslim.errors import ExportError
from torchslim.export import _common as common
from torchslim.quantize import Int8Tuning

_WEIGHT_OPS = ("MatMul", "Convolution", "GroupConvolution")
_SMOOTHING_OP = "nncf_smooth_quant"  # NNCF's name for the multiply each smoothed input gets


@dataclass(frozen=True)
class NNCFRun:
    """What every ``nncf.quantize`` call of one export shares; only the ignored ops change."""

    dataset: Any  # nncf.Dataset of the calibration samples
    size: int  # subset_size: every sample
    model_type: Any  # nncf.ModelType.TRANSFORMER or None
    advanced: Any  # nncf.AdvancedQuantizationParameters or None (NNCF's defaults)


def layer_ops(model: Any, module: nn.Module) -> dict[str, list[str]]:
    """Linear/Conv layer name of ``module`` -> the friendly names of the MatMul/Convolution ops
    ``openvino.convert_model`` made of it in ``model`` (module order; layers without ops left out)."""
    ordered, folded = common.weight_layers(module)
    layers = set(ordered)
    found: dict[str, list[str]] = {name: [] for name in ordered}
    for op in model.get_ordered_ops():
        if op.get_type_name() not in _WEIGHT_OPS:
            continue
        owner = module_path(op.get_friendly_name())
        if owner not in layers and op.get_type_name() != "MatMul":
            consumers = [module_path(t.get_node().get_friendly_name()) for t in op.output(0).get_target_inputs()]
            owner = next((folded[c] for c in consumers if c in folded), None)
        if owner in layers:
            found[owner].append(op.get_friendly_name())
    return {name: ops for name, ops in found.items() if ops}


def module_path(friendly_name: str) -> str | None:
    """``__module.a.b/aten::linear/MatMul`` -> ``a.b`` (``""``: the root); None when the name
    carries no module path (ops the converter's own passes created)."""
    head = friendly_name.split("/", 1)[0]
    if head == "__module":
        return ""
    return head.removeprefix("__module.") if head.startswith("__module.") else None


_RECURRENT_OPS = {"LSTMSequence", "GRUSequence", "RNNSequence", "LSTMCell", "GRUCell", "RNNCell"}


def quantize_model(model: Any, run: NNCFRun, ignored: list[str]) -> Any:
    """One ``nncf.quantize`` of ``model`` (not modified: NNCF quantizes a copy) with the ops
    ``ignored`` left in float."""
    import nncf

    # NNCF's int8 recurrent sequences lost the LSTM block's outputs (cosine 0.66,
    # tests/test_block_contract.py): they stay in float, like torchslim's dynamic int8 keeps them.
    recurrent = sorted({op.get_type_name() for op in model.get_ordered_ops()} & _RECURRENT_OPS)
    scope = nncf.IgnoredScope(names=list(ignored), types=recurrent) if ignored or recurrent else None
    try:
        with common.quiet():
            return nncf.quantize(model, run.dataset, model_type=run.model_type, subset_size=run.size,
                                 ignored_scope=scope, advanced_parameters=run.advanced)
    except Exception as e:
        raise ExportError(f"NNCF could not quantize this model: {common.exporter_reason(e)}. The fp32 OpenVINO "
                          "export itself works; export without quantize.") from None


def quantize_nncf(model: Any, samples: list[tuple[torch.Tensor, ...]], names: list[str], *, transformer: bool,
                  tuning: Int8Tuning, smoothed_layers: int = 0,
                  fallback_inputs: tuple[nn.Module, nn.Module, Any] | None = None,
                  log: Callable[[str], None] = lambda _m: None) -> tuple[Any, dict[str, Any]]:
    """NNCF int8 of the converted ``model``; returns it and the manifest's ``quantization``
    entry. ``smoothed_layers``: Linears torchslim's SmoothQuant already smoothed (``auto``).
    ``fallback_inputs``: (the float model as given, the model converted, the DataBundle)."""
    import nncf

    advanced, smoothing = _smoothing(tuning.smoothquant, transformer, smoothed_layers, log)
    dataset = nncf.Dataset(samples, lambda sample: {n: t.numpy() for n, t in zip(names, sample, strict=True)})
    run = NNCFRun(dataset, len(samples), nncf.ModelType.TRANSFORMER if transformer else None, advanced)
    log(f"NNCF int8 post-training quantization ({len(samples)} calibration samples"
        f"{', each sentence at its own length, ModelType.TRANSFORMER' if transformer else ''})")
    extra: dict[str, Any] = {}
    if tuning.fallback is None:
        quantized = quantize_model(model, run, [])
    else:
        assert fallback_inputs is not None
        quantized, extra = _fallback(model, run, tuning, fallback_inputs, log)
    ops = list(quantized.get_ordered_ops())
    fake_quantize = sum(1 for op in ops if op.get_type_name() == "FakeQuantize")
    if fake_quantize == 0:
        raise ExportError("NNCF quantized no operation of this model (no Conv or MatMul it supports); it would run "
                          "in fp32. Export without quantize.")
    if smoothing["by"] == "nncf":
        smoothing["smoothed_inputs"] = sum(1 for op in ops if op.get_type_name() == "Multiply"
                                           and op.get_friendly_name().endswith(_SMOOTHING_OP))
    return quantized, {"method": "nncf.quantize", "nncf": nncf.__version__,
                       "model_type": "TRANSFORMER" if transformer else "default", "calibration_samples": len(samples),
                       "fake_quantize_ops": fake_quantize, "smoothquant": tuning.smoothquant,
                       "smoothing": smoothing} | extra


def _smoothing(smoothquant: float | str | None, transformer: bool, smoothed_layers: int,
               log: Callable[[str], None]) -> tuple[Any, dict[str, Any]]:
    """(NNCF's advanced parameters, the record of what is smoothed and by which SmoothQuant)."""
    import nncf

    if smoothquant == "auto":  # done on the torch model already: NNCF's own off
        off = nncf.AdvancedSmoothQuantParameters(convolution=-1, matmul=-1)
        return (nncf.AdvancedQuantizationParameters(smooth_quant_alphas=off),
                {"by": "torchslim", "alpha": "auto", "layers": smoothed_layers})
    if not transformer:
        if smoothquant is None:
            return None, {"by": None, "alpha": None}
        why = "NNCF runs its SmoothQuant only for ModelType.TRANSFORMER (models with token inputs)"
        log(f"smoothquant {smoothquant}: not applied: {why}; smoothquant: auto smooths any LayerNorm-fed Linear")
        return None, {"by": None, "alpha": None, "note": f"not applied: {why}"}
    if smoothquant is None:  # NNCF's default for transformers, as before these options existed
        return None, {"by": "nncf", "alpha": nncf.AdvancedSmoothQuantParameters().matmul}
    alphas = nncf.AdvancedSmoothQuantParameters(matmul=float(smoothquant))
    return nncf.AdvancedQuantizationParameters(smooth_quant_alphas=alphas), {"by": "nncf", "alpha": float(smoothquant)}


def _fallback(model: Any, run: NNCFRun, tuning: Int8Tuning, inputs: tuple[nn.Module, nn.Module, Any],
              log: Callable[[str], None]) -> tuple[Any, dict[str, Any]]:
    """The measured loop of ``torchslim.quantize._fallback`` over NNCF runs; returns the chosen
    try's model and the record (under ``fallback``) with the ops it left in float."""
    from torchslim.quantize import measured_fallback
    from torchslim.runtime.openvino import compile_in_memory

    original, converted, data = inputs
    ops = layer_ops(model, converted)

    def quantize_with(kept: tuple[str, ...]) -> tuple[Any, Any]:
        quantized = quantize_model(model, run, [op for layer in kept for op in ops[layer]])
        return compile_in_memory(quantized), quantized

    result, best = measured_fallback(original, converted, list(ops), data, quantize_with, device=torch.device("cpu"),
                                     target_drop=tuning.fallback_target_drop,
                                     max_layers=tuning.fallback_max_layers, log=log)
    return best, {"fallback": result.to_dict(),
                  "kept_in_float_ops": [op for layer in result.kept_in_float for op in ops[layer]]}
