"""scikit-learn's bundled 8x8 handwritten digits (1,797 images, no download)."""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from torchslim.data._bundle import DataBundle


def load_digits(seed: int = 0) -> DataBundle:
    """A fixed seeded split: 70% train, 10% validation, 20% held-out test.

    Pixels (0..16) are scaled to [0, 1] and shaped (1, 8, 8) like a one-channel image.
    The split depends only on ``seed``, so cached models and reports stay comparable.
    """
    from sklearn.datasets import load_digits as _sk_load

    bunch = _sk_load()
    x = torch.tensor(bunch.data, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    y = torch.tensor(bunch.target, dtype=torch.long)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_test = int(0.2 * len(x))
    n_val = int(0.1 * len(x))
    test_idx, val_idx, train_idx = perm[:n_test], perm[n_test : n_test + n_val], perm[n_test + n_val :]
    return DataBundle(
        spec="digits",
        train=TensorDataset(x[train_idx], y[train_idx]),
        val=TensorDataset(x[val_idx], y[val_idx]),
        test=TensorDataset(x[test_idx], y[test_idx]),
        task="classification",
        num_classes=10,
        input_shape=(1, 8, 8),
    )
