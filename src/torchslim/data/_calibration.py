"""Calibration batches: the one implementation every static int8 path draws its data from
(PT2E ``quantize`` static/QAT, the ONNX Runtime and OpenVINO exporters).

One behaviour for all of them:
- a DataBundle gives its train split (never val or test: those judge the result), shuffled
  with ``seed``. Taking the first batches in file order would calibrate an image folder, which
  is sorted by class, on one or two classes' activation ranges;
- an iterable gives its items as they come (a tensor is one single-input batch);
- every batch is checked against the model's input signature (``signature_of``: number of
  inputs, exact dtypes, per-sample shapes; the batch axis and a token input's sequence axis
  free, as every torchslim graph is exported) before anything is calibrated on it;
- no source is a ConfigError naming how to pass one; an empty source a DataError.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice
from typing import Any

import torch

from torchslim.core.export import is_token_input
from torchslim.data._bundle import DataBundle, as_args, loader
from torchslim.errors import ConfigError, DataError

Signature = list[tuple[torch.dtype, list[int | None]]]  # per input: dtype, shape (None = any size)


def signature_of(example_inputs: tuple[torch.Tensor, ...]) -> Signature:
    """What every batch must look like: the batch axis (and a token input's sequence axis) free."""
    signature = []
    for t in example_inputs:
        shape: list[int | None] = [None, *t.shape[1:]]
        if is_token_input(t):
            shape[1] = None
        signature.append((t.dtype, shape))
    return signature


def calibration_batches(
    source: Any, signature: Signature, max_batches: int, *, batch_size: int = 32,
    device: torch.device | str = "cpu", seed: int = 0, how_to_pass: str = "data=",
) -> list[tuple[torch.Tensor, ...]]:
    """Up to ``max_batches`` checked batches (tuples of tensors on ``device``) from ``source``:
    a DataBundle (its train split, shuffled with ``seed``, ``batch_size`` samples a batch), a
    tensor (one batch) or an iterable of input tuples. ``how_to_pass`` names the caller's
    option in the message when ``source`` is None."""
    if source is None:
        raise ConfigError(
            f"Static int8 quantization calibrates activation ranges on real data, and none was given: pass "
            f"{how_to_pass} (a DataBundle, whose train split is used, or an iterable of input tuples), or use "
            "dynamic int8, which needs none."
        )
    if isinstance(source, DataBundle):
        items: Iterable = (as_args(x) for x, _ in loader(source.train, batch_size, shuffle=True, seed=seed))
    elif isinstance(source, torch.Tensor):
        items = [(source,)]
    else:
        items = (as_args(item) for item in source)
    batches = []
    for index, batch in enumerate(islice(items, max(max_batches, 0))):
        check_signature(batch, signature, f"Calibration batch {index}")
        batches.append(tuple(t.detach().to(device) for t in batch))
    if not batches:
        raise DataError("The calibration data is empty: static int8 quantization needs at least one batch of inputs.")
    return batches


def check_signature(batch: tuple, signature: Signature, what: str) -> None:
    """DataError naming ``what`` unless ``batch`` fits ``signature`` (see ``signature_of``)."""
    expected = ", ".join(f"{_dtype_name(d)}[{', '.join('N' if i == 0 else '*' if s is None else str(s) for i, s in enumerate(shape))}]"
                         for d, shape in signature)
    got = ", ".join(f"{_dtype_name(t.dtype)}{list(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__ for t in batch)
    fits = len(batch) == len(signature) and all(
        isinstance(t, torch.Tensor) and t.dtype == dtype and t.dim() == len(shape)
        and all(s is None or s == n for s, n in zip(shape, t.shape, strict=True))
        for t, (dtype, shape) in zip(batch, signature, strict=False)
    )
    if not fits:
        raise DataError(f"{what} is ({got}), but the model takes ({expected}); N is any batch size and * any "
                        "length. Use data shaped like the model's inputs (the data set it was trained on), one "
                        "tuple of tensors per batch in the model's argument order.")


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")
