"""Per-layer sensitivity: damage one layer at a time, measure the accuracy drop.

Probes (``mode``):
    prune     L1 unstructured pruning of that layer alone at each ratio (``method="magnitude"``),
              or its channels removed with Torch-Pruning (``method="channel"``; coupled layers
              such as both sides of a residual add go with it, BN is recalibrated)
    quantize  int8 round-trip of that layer alone, as the static int8 kernels do it: weights
              symmetric per output channel, its input uint8 affine per tensor
              (``torchslim.core.fake_int8``, the one model of that error)

Accuracy is measured on the validation split (``split``): these numbers choose how the model
is optimized, so they must not come from the held-out test split that judges the result.
The table drives ``ratios_from_sensitivity`` (per-layer pruning ratios) and
``skip_list_from_sensitivity`` (layers to keep in float when quantizing).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.utils.prune as torch_prune

from torchslim.core.fake_int8 import fake_int8_
from torchslim.data import DataBundle
from torchslim.errors import ConfigError
from torchslim.prune._layers import check_module_names, output_layer_names, prunable_layers


@dataclass
class SensitivityRow:
    layer: str
    kind: str  # the module class, e.g. Conv2d
    params: int
    drop: dict[str, float]  # probe label ("0.5", "int8") -> accuracy drop in percentage points


@dataclass
class SensitivityResult:
    mode: str
    method: str
    split: str
    baseline_accuracy: float  # in [0, 1]; fidelity to itself (1.0) for embedding data
    probes: list[str]
    rows: list[SensitivityRow] = field(default_factory=list)

    def to_dict(self) -> dict:
        """Plain data for JSON or a plot: one series per layer, x = probes, y = drop."""
        return asdict(self)

    def to_table(self) -> str:
        head = f"{'layer':<28} {'kind':<10} {'params':>9} " + " ".join(f"{p:>8}" for p in self.probes)
        lines = [f"sensitivity ({self.mode}/{self.method}) on {self.split}: baseline {self.baseline_accuracy:.2%}; "
                 "accuracy drop in points", head, "-" * len(head)]
        for r in self.rows:
            lines.append(f"{r.layer:<28} {r.kind:<10} {r.params:>9,} " + " ".join(f"{r.drop[p]:>8.2f}" for p in self.probes))
        return "\n".join(lines)


def sensitivity(
    model: nn.Module,
    data: DataBundle,
    *,
    mode: Literal["prune", "quantize"] = "prune",
    method: Literal["magnitude", "channel"] = "magnitude",
    ratios: Sequence[float] = (0.3, 0.5, 0.7, 0.9),
    layers: Sequence[str] | None = None,
    layer_types: Sequence[str] = ("linear", "conv"),
    split: Literal["val", "train"] = "val",
    max_layers: int | None = None,
    device: str | torch.device = "cpu",
    log: Callable[[str], None] | None = None,
) -> SensitivityResult:
    """One row per layer: the accuracy drop when only that layer is pruned/quantized.

    ``max_layers`` probes only that many layers, the largest first (each probe costs one pass
    over ``split``). For embedding data the score is fidelity (mean cosine similarity to the
    undamaged model's own outputs) instead of accuracy.
    """

    if mode not in ("prune", "quantize"):
        raise ConfigError(f"sensitivity mode {mode!r} is unknown; use prune or quantize.")
    if method not in ("magnitude", "channel"):
        raise ConfigError(f"sensitivity method {method!r} is unknown; use magnitude or channel.")
    for r in ratios:
        if not 0.0 <= r < 1.0:
            raise ConfigError(f"sensitivity ratios must each be in [0, 1), got {r}.")
    device = torch.device(device)
    model = copy.deepcopy(model).to(device).eval()
    available = prunable_layers(model, layer_types)
    names = list(layers) if layers is not None else list(available)
    check_module_names(model, names, "sensitivity layers", allowed=available)
    if method == "channel" and mode == "prune":
        # The classifier's outputs are the classes: removing them is not an option to measure.
        example = tuple(t.to(device) for t in data.example_inputs(2, split="train"))
        names = [n for n in names if n not in output_layer_names(model, example)]
    if max_layers is not None:
        names = sorted(names, key=lambda n: -available[n].weight.numel())[:max_layers]
    dataset = getattr(data, split)
    score = _scorer(model, data, dataset, device)
    baseline = score(model)
    probes = [f"{r:g}" for r in ratios] if mode == "prune" else ["int8"]
    result = SensitivityResult(mode, method if mode == "prune" else "int8", split, baseline, probes)
    say = log or (lambda _msg: None)
    for name in names:
        drops = {}
        for probe in probes:
            damaged = _damage(model, name, mode, method, probe, data, device)
            drops[probe] = round((baseline - score(damaged)) * 100, 4)
        result.rows.append(SensitivityRow(name, type(available[name]).__name__, available[name].weight.numel(), drops))
        say(f"sensitivity {name}: " + ", ".join(f"{p}: {d:+.2f} pts" for p, d in drops.items()))
    return result


def _scorer(model: nn.Module, data: DataBundle, dataset, device) -> Callable[[nn.Module], float]:
    """Accuracy on ``dataset``; for embedding data, fidelity to ``model``'s own outputs."""
    from torchslim.data import scorer

    return scorer(data.task, dataset, model, device=device)


def _damage(model: nn.Module, name: str, mode: str, method: str, probe: str, data, device) -> nn.Module:
    if mode == "prune" and method == "channel":
        from torchslim.prune._api import prune

        return prune(model, {"method": "channel", "ratio": 0.0, "layer_ratios": {name: float(probe)}}, data=data, device=device)
    damaged = copy.deepcopy(model)
    layer = dict(damaged.named_modules())[name]
    if mode == "prune":
        torch_prune.l1_unstructured(layer, "weight", amount=float(probe))
        torch_prune.remove(layer, "weight")
    else:
        fake_int8_(layer)
    return damaged


def ratios_from_sensitivity(result: SensitivityResult, max_drop: float = 1.0) -> dict[str, float]:
    """Per layer, the largest probed ratio whose accuracy drop stayed within ``max_drop``
    points (0.0 when none did) — feed it to a prune config's ``layer_ratios``."""
    if result.mode != "prune":
        raise ConfigError("ratios_from_sensitivity needs a prune-mode sensitivity result (mode='prune').")
    ratios = {}
    for row in result.rows:
        within = [float(p) for p in result.probes if row.drop[p] <= max_drop]
        ratios[row.layer] = max(within, default=0.0)
    return ratios


def skip_list_from_sensitivity(result: SensitivityResult, max_drop: float = 1.0) -> list[str]:
    """Layers whose drop exceeded ``max_drop`` points at their mildest probe: keep them in
    float when quantizing (quantize's ``skip``) or out of pruning (prune's ``ignore``)."""
    return [row.layer for row in result.rows if min(row.drop.values()) > max_drop]
