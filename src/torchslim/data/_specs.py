"""DATA spec strings -> DataBundle: ``digits``, ``npz:FILE``, ``imagefolder:DIR``,
``text:FILE``, ``text+corpus:FILE`` and ``package.module:function``."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from torchslim.data._bundle import DataBundle
from torchslim.data._checks import check_arrays, check_tensors
from torchslim.errors import DataError, SpecError

CORPUS_PREFIX = "text+corpus:"
DATA_SPEC_HELP = (
    "Valid DATA specs: 'digits' (built-in), 'npz:FILE' (arrays x_train, y_train, x_val, y_val, "
    "optionally x_test, y_test), 'imagefolder:DIR' (one sub-folder per class), 'text:FILE' "
    "(one sentence per line, for hf: models), 'text+corpus:FILE' (the same, its training split "
    "extended with torchslim's built-in English corpus) or 'package.module:function' returning "
    "(train_dataset, val_dataset)."
)


def load_data(spec: str = "digits", *, seed: int = 0, tokenizer: Any = None) -> DataBundle:
    """Resolve a DATA spec. ``tokenizer`` is needed only for ``text:`` data."""
    spec = (spec or "").strip()
    if spec == "digits":
        from torchslim.data._digits import load_digits

        return load_digits(seed=seed)
    if spec.startswith("npz:"):
        return _load_npz(spec, Path(spec[4:]), seed)
    if spec.startswith("imagefolder:"):
        from torchslim.data._imagefolder import load_imagefolder

        return load_imagefolder(spec, Path(spec[len("imagefolder:"):]), seed)
    if spec.startswith("text:"):
        from torchslim.data._text import load_text

        return load_text(spec, Path(spec[5:]), tokenizer=tokenizer, seed=seed)
    if spec.startswith(CORPUS_PREFIX):
        from torchslim.data._text import load_text

        return load_text(spec, Path(spec[len(CORPUS_PREFIX):]), tokenizer=tokenizer, seed=seed, corpus=True)
    if ":" in spec and not spec.startswith(("/", ".")):
        return _load_function(spec, seed)
    raise SpecError(f"Unknown DATA spec {spec!r}. {DATA_SPEC_HELP}")


def split_holdout(dataset: Dataset, fraction: float, seed: int) -> tuple[Subset, Subset]:
    """A fixed seeded split of ``dataset`` into (rest, held-out ``fraction``)."""
    n = len(dataset)
    n_hold = max(1, int(round(n * fraction)))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return Subset(dataset, perm[n_hold:]), Subset(dataset, perm[:n_hold])


def _classification_bundle(spec: str, train: Dataset, val: Dataset, test: Dataset) -> DataBundle:
    check_tensors(spec, train)
    labels = _labels(train)
    num_classes = int(labels.max().item()) + 1 if labels.numel() else 0
    if num_classes < 2:
        raise DataError(f"{spec}: the training split has fewer than 2 classes; a classifier needs at least 2.")
    x0 = train[0][0]
    shape = tuple(x0.shape) if isinstance(x0, torch.Tensor) else None
    return DataBundle(spec, train, val, test, "classification", num_classes, shape)


def _labels(ds: Dataset) -> torch.Tensor:
    if isinstance(ds, TensorDataset):
        return ds.tensors[1]
    return torch.as_tensor([int(ds[i][1]) for i in range(len(ds))])


def _load_npz(spec: str, path: Path, seed: int) -> DataBundle:
    if not path.is_file():
        raise SpecError(f"{spec}: file {str(path)!r} does not exist. Give the path to an .npz file.")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # numpy raises many kinds for a corrupt archive
        raise DataError(f"{spec}: cannot read {str(path)!r} as an .npz archive ({e}).") from None
    required = ["x_train", "y_train", "x_val", "y_val"]
    missing = [k for k in required if k not in arrays]
    if missing:
        raise DataError(
            f"{spec}: the archive lacks {', '.join(missing)} (it has: {', '.join(arrays) or 'nothing'}). "
            "An npz data file needs x_train, y_train, x_val, y_val and optionally x_test, y_test."
        )
    check_arrays(spec, arrays)

    def pair(x_key: str, y_key: str) -> TensorDataset:
        x, y = arrays[x_key], arrays[y_key]
        if len(x) == 0:
            raise DataError(f"{spec}: {x_key} is empty; every split needs at least one sample.")
        if len(x) != len(y):
            raise DataError(f"{spec}: {x_key} has {len(x)} samples but {y_key} has {len(y)}.")
        if not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"{spec}: {y_key} must hold integer class labels, not {y.dtype}.")
        return TensorDataset(torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.long))

    train = pair("x_train", "y_train")
    val = pair("x_val", "y_val")
    if "x_test" in arrays and "y_test" in arrays:
        test = pair("x_test", "y_test")
    else:  # no test split: hold out half of val so metrics never see selection data
        val, test = split_holdout(val, 0.5, seed)
    return _classification_bundle(spec, train, val, test)


def _load_function(spec: str, seed: int) -> DataBundle:
    module_name, _, attr = spec.rpartition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise SpecError(f"DATA spec {spec!r}: cannot import module {module_name!r} ({e}). {DATA_SPEC_HELP}") from None
    except SystemExit as e:  # sys.exit() in user code must not end torchslim with its exit code
        raise SpecError(f"DATA spec {spec!r}: importing {module_name!r} called sys.exit({e.code!r}).") from None
    fn = getattr(module, attr, None)
    if fn is None or not callable(fn):
        raise SpecError(f"DATA spec {spec!r}: module {module_name!r} has no callable {attr!r}.")
    try:
        result = fn()
    except SystemExit as e:
        raise DataError(f"DATA spec {spec!r}: {attr}() called sys.exit({e.code!r}) instead of returning "
                        "(train_dataset, val_dataset).") from None
    except Exception as e:
        raise DataError(f"DATA spec {spec!r}: {attr}() raised {type(e).__name__}: {e}") from None
    if not (isinstance(result, tuple) and len(result) in (2, 3)):
        raise DataError(f"DATA spec {spec!r}: {attr}() must return (train_dataset, val_dataset[, test_dataset]).")
    for ds in result:
        if len(ds) == 0:
            raise DataError(f"DATA spec {spec!r}: {attr}() returned an empty data set.")
    if len(result) == 3:
        train, val, test = result
    else:
        train, val = result
        val, test = split_holdout(val, 0.5, seed)
    return _classification_bundle(spec, train, val, test)
