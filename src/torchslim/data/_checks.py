"""Data that loads but cannot be right, named before training or measuring starts.

NaN or infinite inputs (else training reports a NaN loss and suggests a lower lr), negative
labels (-1 as "unlabeled" is common), labels of splits beyond the training split's classes, and
splits whose samples are shaped differently are all the data's to fix: ``DataError``, exit 2.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from torchslim.errors import DataError


def check_arrays(spec: str, arrays: dict[str, np.ndarray]) -> None:
    """npz arrays, after the required keys are known to be there."""
    splits = [s for s in ("train", "val", "test") if f"x_{s}" in arrays and f"y_{s}" in arrays]
    shape = arrays["x_train"].shape[1:]
    for s in splits:
        x, y = arrays[f"x_{s}"], arrays[f"y_{s}"]
        if x.shape[1:] != shape:
            raise DataError(f"{spec}: x_{s} samples are shaped {list(x.shape[1:])} but x_train samples are "
                            f"{list(shape)}; every split must hold samples of one shape.")
        if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
            bad = int(np.size(x) - np.isfinite(x).sum())
            raise DataError(f"{spec}: your data has NaNs (or infinities): {bad} value(s) in x_{s}. "
                            "Clean or impute them before training or optimizing; a model cannot learn from them.")
        if np.issubdtype(y.dtype, np.integer) and y.size and y.min() < 0:
            raise DataError(f"{spec}: y_{s} holds negative labels (e.g. {int(y.min())}); class labels must be "
                            "0, 1, ..., classes-1. Drop unlabeled samples (often marked -1) first.")
    if "y_train" in arrays and np.issubdtype(arrays["y_train"].dtype, np.integer) and arrays["y_train"].size:
        classes = int(arrays["y_train"].max()) + 1
        for s in splits[1:]:
            y = arrays[f"y_{s}"]
            if np.issubdtype(y.dtype, np.integer) and y.size and int(y.max()) >= classes:
                raise DataError(f"{spec}: y_{s} has label {int(y.max())} but the training split's labels go up to "
                                f"{classes - 1}; every class must appear in y_train.")


def check_tensors(spec: str, train: Dataset) -> None:
    """In-memory data from a function: NaNs and negative labels (other datasets are checked as read)."""
    if not isinstance(train, TensorDataset) or len(train.tensors) < 2:
        return
    x, y = train.tensors[0], train.tensors[-1]
    if x.is_floating_point() and not torch.isfinite(x).all():
        raise DataError(f"{spec}: your data has NaNs (or infinities) in the training inputs. Clean or impute "
                        "them before training or optimizing.")
    if y.numel() and not y.is_floating_point() and int(y.min()) < 0:
        raise DataError(f"{spec}: the training labels include {int(y.min())}; class labels must be 0, 1, ..., "
                        "classes-1. Drop unlabeled samples (often marked -1) first.")
