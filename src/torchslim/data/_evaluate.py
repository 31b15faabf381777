from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from torchslim.data._bundle import as_args, loader, to_device


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
    """Top-1 accuracy in [0, 1]. A module in training mode is evaluated in eval mode."""
    # Exported programs have their mode baked in and refuse .eval(); only plain modules switch.
    was_training = isinstance(fn, torch.nn.Module) and fn.training and not _is_exported(fn)
    if was_training:
        fn.eval()
    try:
        logits, targets = predict(fn, dataset, batch_size=batch_size, device=device)
    finally:
        if was_training:
            fn.train()
    return float((logits.argmax(dim=-1) == targets).float().mean())


def fidelity(fn: Callable, reference: torch.Tensor | Callable, dataset: Dataset, *, batch_size: int = 256, device="cpu") -> float:
    """Mean cosine similarity of ``fn``'s outputs to ``reference`` (outputs or a callable)."""
    out, _ = predict(fn, dataset, batch_size=batch_size, device=device)
    if callable(reference):
        reference, _ = predict(reference, dataset, batch_size=batch_size, device=device)
    return float(F.cosine_similarity(out.flatten(1), reference.flatten(1), dim=1).mean())


def _is_exported(fn: torch.nn.Module) -> bool:
    from torch.export._unlift import _StatefulGraphModule

    return isinstance(fn, _StatefulGraphModule)
