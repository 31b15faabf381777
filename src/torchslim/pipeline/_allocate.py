"""Per-layer pruning ratios from measured sensitivity, for one overall ratio.

Deep Compression (Han et al.) prunes each layer to its own threshold, chosen from a
sensitivity analysis: layers whose accuracy barely moves when pruned alone are pruned
hardest. The rule here: each probed layer ``i`` keeps a density

    d_i = c * sqrt((drop_i + DROP_FLOOR) / n_i)

(``drop_i``: points lost when that layer alone was pruned at the probe ratio, clamped at 0;
``n_i``: its weights), with ``c`` set so the probed layers together keep exactly ``1 - ratio``
of their weights. Why the square root: model layer ``i``'s loss as ``drop_i`` times
(probe density / d_i); minimizing the weights kept, sum(n_i d_i), for a fixed total loss gives
``n_i = lambda * drop_i / d_i^2``, i.e. the rule above. So a sensitive layer keeps more, and a
small one too (pruning it saves few bytes). ``DROP_FLOOR`` stands for the noise of the probe:
a layer that lost nothing is not free to empty. On LeNet-300-100 (digits, probe 90%: fc3 37 points,
fc1 10, fc2 0.6) at an overall 94.4% this gave fc1 / fc2 / fc3 densities of 8% / 2% / 70%, near
the hand-tuned 8% / 4% / 50% of docs/compression.md, and 48x within 0.5 points after 5-bit
sharing and Huffman coding (docs/optimize.md).
"""

from __future__ import annotations

DROP_FLOOR = 0.1  # points: about the noise of one probe on a few hundred validation samples
MIN_DENSITY = 0.005  # prune ratios must stay below 1; no layer is emptied
MAX_DENSITY = 1.0


def _kept(params: list[int], weights: list[float], scale: float) -> float:
    return sum(n * min(MAX_DENSITY, max(MIN_DENSITY, scale * w)) for n, w in zip(params, weights, strict=True))


def allocate_ratios(sensitivity: dict | None, ratio: float) -> dict[str, float]:
    """``{layer: prune ratio}`` for the probed layers of a ``layer_sensitivity`` table, whose
    parameter-weighted mean is ``ratio`` (up to the density bounds). ``{}`` without a table."""
    rows = [r for r in (sensitivity or {}).get("layers", []) if r.get("params", 0) > 0]
    if not rows or not 0.0 < ratio < 1.0:
        return {}
    params = [int(r["params"]) for r in rows]
    weights = [((max(0.0, float(r["accuracy_drop"])) + DROP_FLOOR) / n) ** 0.5 for r, n in zip(rows, params, strict=True)]
    target = (1.0 - ratio) * sum(params)
    low, high = 0.0, MAX_DENSITY / min(weights)  # at ``high`` every layer is dense
    if _kept(params, weights, high) <= target:
        return {r["name"]: 0.0 for r in rows}
    for _ in range(60):  # kept weights grow monotonically with the scale: bisect for it
        mid = (low + high) / 2
        low, high = (mid, high) if _kept(params, weights, mid) < target else (low, mid)
    scale = (low + high) / 2
    return {r["name"]: round(1.0 - min(MAX_DENSITY, max(MIN_DENSITY, scale * w)), 4)
            for r, w in zip(rows, weights, strict=True)}
