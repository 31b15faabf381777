"""The one implementation of the task metrics: accuracy, and fidelity for embedding models.

Everything that scores a model (the search, bench, the fallback, sensitivity, the training
loop's per-epoch validation under DDP) goes through ``accuracy_counts`` / ``fidelity_sums``,
so an empty split, the eval-mode switch and the cosine are the same everywhere.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from torchslim.core.export import is_exported_graph
from torchslim.data._bundle import as_args, loader, to_device
from torchslim.errors import DataError


@torch.no_grad()
def predict(fn: Callable, dataset: Dataset, *, batch_size: int = 256, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """All outputs of ``fn`` over ``dataset`` (on CPU, float32) and the targets."""
    outs, targets = [], []
    for x, y in loader(dataset, batch_size, device=device):
        out = fn(*as_args(to_device(x, device)))
        if isinstance(out, (tuple, list)):
            out = out[0]
        outs.append(torch.as_tensor(out).detach().float().cpu())
        targets.append(torch.as_tensor(y))
    return torch.cat(outs), torch.cat(targets)


def accuracy(fn: Callable, dataset: Dataset, *, batch_size: int = 256, device="cpu") -> float:
    """Top-1 accuracy in [0, 1] (see ``accuracy_counts``)."""
    return score_ratio(*accuracy_counts(fn, dataset, batch_size=batch_size, device=device), "accuracy")


def fidelity(fn: Callable, reference: torch.Tensor | Callable, dataset: Dataset, *, batch_size: int = 256, device="cpu") -> float:
    """Mean over samples of the cosine similarity of ``fn``'s outputs to ``reference`` (the
    reference model's outputs over ``dataset``, or that model itself); see ``fidelity_sums``."""
    return score_ratio(*fidelity_sums(fn, reference, dataset, batch_size=batch_size, device=device), "fidelity")


def scorer(task: str, dataset: Dataset, reference: torch.Tensor | Callable | None = None, *,
           device="cpu") -> Callable[[Callable], float]:
    """The task's metric over ``dataset`` as a function of the model being judged: accuracy for
    classification; for embedding data, fidelity to ``reference`` (the reference model, whose
    outputs are computed once here, or those outputs already)."""
    if task != "embedding":
        return lambda fn: accuracy(fn, dataset, device=device)
    if reference is None:
        raise ValueError("fidelity needs a reference: the unoptimized model or its outputs over the data set")
    if callable(reference):
        with eval_mode(reference):
            reference, _ = predict(reference, dataset, device=device)
    return lambda fn: fidelity(fn, reference, dataset, device=device)


def accuracy_counts(fn: Callable, dataset: Dataset, *, batch_size: int = 256, device="cpu") -> tuple[float, float]:
    """``(correct, total)`` top-1 over ``dataset``, ``(0, 0)`` when it is empty.

    The one implementation of accuracy: ``accuracy`` divides, and the training loop's DDP
    ``evaluate`` sums these over ranks first (each scores its own shard, which may be empty).
    A module is scored in eval mode and given back in the mode it came in."""
    if not len(dataset):
        return 0.0, 0.0
    with eval_mode(fn):
        logits, targets = predict(fn, dataset, batch_size=batch_size, device=device)
    return float((logits.argmax(dim=-1) == targets).sum()), float(len(targets))


def fidelity_sums(fn: Callable, reference: torch.Tensor | Callable, dataset: Dataset, *, batch_size: int = 256,
                  device="cpu") -> tuple[float, float]:
    """``(sum of per-sample cosine similarities, samples)`` of ``fn``'s outputs to ``reference``,
    ``(0, 0)`` when ``dataset`` is empty; scored in eval mode, as ``accuracy_counts``."""
    if not len(dataset):
        return 0.0, 0.0
    with eval_mode(fn):
        out, _ = predict(fn, dataset, batch_size=batch_size, device=device)
    if callable(reference):
        with eval_mode(reference):
            reference, _ = predict(reference, dataset, batch_size=batch_size, device=device)
    if reference.shape[0] != out.shape[0]:
        raise DataError(f"fidelity: {out.shape[0]} outputs but {reference.shape[0]} reference outputs; "
                        "the reference must be the reference model's outputs over the same data set.")
    return float(F.cosine_similarity(out.flatten(1), reference.flatten(1), dim=1).sum()), float(out.shape[0])


def score_ratio(total: float, count: float, metric: str) -> float:
    """``total / count``; a DataError when nothing was scored (an empty split), where a silent
    0.0 would read as a model that gets everything wrong."""
    if count <= 0:
        raise DataError(f"Cannot measure {metric}: the data set is empty. Every split needs at least one sample; "
                        "check the DATA spec (its validation and test splits).")
    return total / count


@contextlib.contextmanager
def eval_mode(fn: Callable) -> Iterator[None]:
    """A plain module in training mode runs in eval mode inside, and is switched back after.
    Exported graphs are left alone: their dropout/batch-norm are baked-in aten ops that
    ``.eval()`` cannot switch (the training loop moves them with ``set_mode``)."""
    switch = isinstance(fn, torch.nn.Module) and fn.training and not is_exported_graph(fn)
    if switch:
        fn.eval()
    try:
        yield
    finally:
        if switch:
            fn.train()

