"""Specs to objects, for library users: ``load_model`` (a MODEL spec -> a ready ``nn.Module``).

``torchslim.load_data`` (a DATA spec -> ``DataBundle``) is ``torchslim.data.load_data``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn as nn

from torchslim.data import DataBundle


def load_model(
    spec: str,
    data: DataBundle | str = "digits",
    *,
    weights: str | Path | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> nn.Module:
    """The model a MODEL spec names, in eval mode and ready to optimize.

    A zoo name gets its trained weights (trained on ``data`` on first use, then cached); a
    ``file.py:factory`` / ``package.module:factory`` gets ``weights``, or is trained first with a
    notice; ``hf:DIR`` / ``hf:minilm`` loads a local Hugging Face model. ``data`` is the
    ``DataBundle`` (or DATA spec) the model is shaped for and trained on. For an untrained zoo
    architecture use ``torchslim.create_model``.
    """
    from torchslim import specs

    if isinstance(data, str):
        handle, _ = specs.resolve(spec, data, weights=weights, device=device, seed=seed, log=log)
        return handle.model
    if spec.strip().startswith("hf:"):
        from torchslim.hf import load_hf, reconcile_task

        handle = load_hf(spec.strip(), weights=weights)
        reconcile_task(handle, data, log)
        return handle.model.to(device).eval()
    return specs.load_model(spec, data, weights=weights, device=device, seed=seed, log=log).model
