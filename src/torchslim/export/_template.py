"""The sequence the ONNX and OpenVINO exporters share, written once.

Both go float model -> converted graph -> (optionally) calibrated int8 -> checked -> written:

1. ``prepare``: the model and example on CPU (a CUDA model is copied, never moved: the graph
   is device-free and the parity check runs on CPU), the input names, and, for a calibrated
   variant, the calibration batches and the fallback's validation data checked *before* the
   seconds of conversion are spent;
2. ``smoothed``: with ``smoothquant``, a SmoothQuant'ed copy of the model is what gets
   converted (the caller's model is never touched);
3. the format's own conversion and quantization (``_onnx``, ``_openvino``);
4. ``parity_enforced``: outputs are compared with the PyTorch model's, and a divergence is an
   ExportError, unless accuracy-aware fallback measured the metric within its target on the
   validation split (the better judge of an int8 model; the cosine is then only recorded);
5. the file and its manifest written atomically (the format's own writer).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from torchslim.core.manifest import input_specs
from torchslim.core.padding import padding_extra
from torchslim.errors import ConfigError
from torchslim.export import _common as common
from torchslim.export._config import ExportConfig
from torchslim.export._formats import ArtifactInfo
from torchslim.quantize import Calibration, Int8Tuning


@dataclass
class Prepared:
    module: nn.Module  # on CPU
    example: tuple[torch.Tensor, ...]  # on CPU
    names: list[str]  # the inputs' names, as the manifest records them
    tuning: Int8Tuning  # the variant's SmoothQuant / fallback (all off when it takes none)
    batches: list[tuple[torch.Tensor, ...]] = field(default_factory=list)  # calibration; [] when not calibrated
    padding: dict[str, Any] = field(default_factory=dict)  # the manifest's padding facts

    @property
    def calibrated(self) -> bool:
        return bool(self.batches)


def prepare(module: nn.Module, example_inputs: tuple[torch.Tensor, ...], config: ExportConfig, data: Any,
            info: ArtifactInfo) -> Prepared:
    """Step 1 (see the module docstring); a calibrated variant (one that inherits
    ``Calibration``) gets its batches from ``data``, checked against the example's shapes."""
    module, example = on_cpu(module, example_inputs)
    names = [spec.name for spec in input_specs(example, info.input_names)]
    tuning = config.tuning() if isinstance(config, Int8Tuning) else Int8Tuning()
    prepared = Prepared(module, example, names, tuning, padding=padding_extra(module, example, names))
    if isinstance(config, Calibration):  # validate the data before seconds of conversion are spent
        prepared.batches = common.calibration_batches(data, common.signature_of(example), config.calibration_batches,
                                                      batch_size=config.batch_size)
        check_fallback_data(tuning, data)
    return prepared


def on_cpu(module: nn.Module, example_inputs: tuple[torch.Tensor, ...]) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    # Graphs are device-free; converting on CPU keeps the parity check (ORT / OpenVINO CPU) exact
    # and leaves the caller's CUDA module untouched (a copy is moved, never the original).
    if any(p.device.type != "cpu" for p in module.parameters()) or any(b.device.type != "cpu" for b in module.buffers()):
        module = copy.deepcopy(module).cpu()
    return module, tuple(t.detach().cpu() for t in example_inputs)


def check_fallback_data(tuning: Int8Tuning, data: Any) -> None:
    from torchslim.data import DataBundle

    if tuning.fallback is not None and (not isinstance(data, DataBundle) or len(data.val) == 0):
        raise ConfigError("fallback: auto measures the metric on the validation split: pass data= a "
                          "DataBundle with a non-empty val split (--data on the command line), or set fallback off.")


def smoothed(module: nn.Module, example: tuple[torch.Tensor, ...], samples: list[tuple[torch.Tensor, ...]],
             alpha: float | str, log: Callable[[str], None], *, before: str) -> tuple[nn.Module, list[Any]]:
    """Step 2: a SmoothQuant'ed copy of ``module`` (the caller's model is never touched) and its groups."""
    from torchslim.quantize import smooth_

    copied = copy.deepcopy(module).eval()
    groups = smooth_(copied, example, samples, alpha)
    log(f"SmoothQuant (alpha {alpha}) on {sum(len(g.linears) for g in groups)} LayerNorm-fed Linear layers "
        f"before {before}")
    return copied, groups


def parity_enforced(quantization: dict[str, Any]) -> bool:
    """Step 4: False when accuracy-aware fallback measured the metric within its target."""
    return not quantization.get("fallback", {}).get("within_target", False)
