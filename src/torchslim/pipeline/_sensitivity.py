"""Per-layer sensitivity: how much the task metric drops when one layer alone is pruned.

Each Conv/Linear layer in turn has its smallest-magnitude weights zeroed (``ratio`` of them),
the model is scored on the *validation* split (never the held-out test split, since the
result steers the search), and the weights are put back. Cost: one validation pass per
probed layer; with ``max_layers`` the largest layers are probed first.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

from torchslim.bench import accuracy, fidelity, predict
from torchslim.data import DataBundle

PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def prunable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every Conv/Linear with a weight, in module order."""
    return [(n, m) for n, m in model.named_modules()
            if isinstance(m, PRUNABLE) and isinstance(getattr(m, "weight", None), torch.Tensor)]


@torch.no_grad()
def layer_sensitivity(model: nn.Module, data: DataBundle, *, ratio: float = 0.5, max_layers: int = 64,
                      device: str | torch.device = "cpu") -> dict:
    """``{"ratio", "split", "metric", "layers": [{"name", "params", "accuracy_drop"}]}``,
    drops in percentage points, most sensitive first."""
    probe = copy.deepcopy(model).to(device).eval()
    layers = prunable_layers(probe)
    layers = sorted(layers, key=lambda nm: -nm[1].weight.numel())[:max_layers]
    reference = None
    if data.task == "embedding":
        reference, _ = predict(probe, data.val, device=device)

    def score() -> float:
        if reference is not None:
            return fidelity(probe, reference, data.val, device=device)
        return accuracy(probe, data.val, device=device)

    base = score()
    rows = []
    for name, layer in layers:
        weight = layer.weight
        saved = weight.detach().clone()
        k = int(round(ratio * weight.numel()))
        if k < 1:
            continue
        threshold = weight.detach().abs().flatten().kthvalue(k).values
        weight.masked_fill_(weight.abs() <= threshold, 0.0)
        drop = (base - score()) * 100.0
        weight.copy_(saved)
        rows.append({"name": name, "params": int(weight.numel()), "accuracy_drop": round(drop, 4)})
    rows.sort(key=lambda r: -r["accuracy_drop"])
    return {"ratio": ratio, "split": "val", "metric": data.metric, "baseline_val": round(base, 6), "layers": rows}


def most_sensitive(sensitivity: dict | None, n: int) -> list[str]:
    """Names of the ``n`` layers whose pruning hurt most (only those that hurt at all)."""
    if not sensitivity or n <= 0:
        return []
    return [r["name"] for r in sensitivity.get("layers", []) if r["accuracy_drop"] > 0][:n]
