"""1-D k-means for weight sharing, vectorized in torch (no Python loop over weights).

Deep Compression found linear initialization (centroids spread evenly between the min and
max weight) better than random or density-based: it keeps a few centroids on the rare large
weights, which matter most. In one dimension the nearest centroid is found by a binary
search over the midpoints of the sorted centroids, so one Lloyd iteration is
O(n log k) with a bincount for the update.
"""

from __future__ import annotations

import torch


def kmeans_1d(values: torch.Tensor, clusters: int, *, iterations: int = 50, tol: float = 1e-7) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster ``values`` (any shape) into at most ``clusters`` centroids.

    Returns ``(centroids, assignment)``: sorted float64 centroids and, for every value, the
    index of its centroid (int64, same shape as ``values``). Empty clusters are dropped.
    """
    flat = values.detach().reshape(-1).to(torch.float64)
    if flat.numel() == 0:
        return flat.new_zeros(0), torch.zeros(values.shape, dtype=torch.int64, device=values.device)
    distinct = torch.unique(flat)
    if distinct.numel() <= clusters:  # already shared: nothing to approximate
        return distinct, torch.searchsorted(distinct, flat).reshape(values.shape)
    lo, hi = flat.min(), flat.max()
    centroids = torch.linspace(0.0, 1.0, clusters, dtype=torch.float64, device=flat.device) * (hi - lo) + lo
    for _ in range(iterations):
        assignment = _assign(flat, centroids)
        sums = torch.bincount(assignment, weights=flat, minlength=len(centroids))
        counts = torch.bincount(assignment, minlength=len(centroids))
        keep = counts > 0
        updated = sums[keep] / counts[keep]
        shift = (updated - centroids[keep]).abs().max() if keep.all() else None
        centroids = torch.sort(updated).values
        if shift is not None and shift <= tol * (hi - lo):
            break
    return centroids, _assign(flat, centroids).reshape(values.shape)


def _assign(flat: torch.Tensor, sorted_centroids: torch.Tensor) -> torch.Tensor:
    midpoints = (sorted_centroids[1:] + sorted_centroids[:-1]) / 2
    return torch.bucketize(flat, midpoints)
