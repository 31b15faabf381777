"""The search's per-layer sensitivity table: ``torchslim.prune.sensitivity`` at one ratio,
in the shape report.json and the refine stage use.

Each Conv/Linear layer in turn has its smallest-magnitude weights zeroed (``ratio`` of them)
and the model is scored on the *validation* split (never the held-out test split, since the
result steers the search). Cost: one validation pass per probed layer; with ``max_layers``
the largest layers are probed first.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from torchslim.data import DataBundle


def layer_sensitivity(model: nn.Module, data: DataBundle, *, ratio: float = 0.5, max_layers: int = 64,
                      device: str | torch.device = "cpu") -> dict:
    """``{"ratio", "split", "metric", "baseline_val", "layers": [{"name", "params", "accuracy_drop"}]}``,
    drops in percentage points, most sensitive first."""
    from torchslim.prune import sensitivity

    result = sensitivity(model, data, mode="prune", method="magnitude", ratios=(ratio,), split="val",
                         max_layers=max_layers, layer_types=("linear", "conv"), device=device)
    probe = result.probes[0]
    rows = [{"name": r.layer, "params": r.params, "accuracy_drop": r.drop[probe]} for r in result.rows]
    rows.sort(key=lambda r: -r["accuracy_drop"])
    return {"ratio": ratio, "split": result.split, "metric": data.metric,
            "baseline_val": round(result.baseline_accuracy, 6), "layers": rows}


def most_sensitive(sensitivity: dict | None, n: int) -> list[str]:
    """Names of the ``n`` layers whose pruning hurt most (only those that hurt at all)."""
    if not sensitivity or n <= 0:
        return []
    return [r["name"] for r in sensitivity.get("layers", []) if r["accuracy_drop"] > 0][:n]
