"""The transformer layers of a (wrapped) Hugging Face model, for per-layer distillation."""

from __future__ import annotations

import torch.nn as nn


def transformer_layers(model: nn.Module) -> list[nn.Module]:
    """The encoder/decoder layers of the first transformers model inside ``model``, in order.

    They are found structurally, not by attribute name (BERT's ``encoder.layer``, DistilBERT's
    ``transformer.layer``, others' ``layers``): the first ``nn.ModuleList`` with exactly
    ``config.num_hidden_layers`` entries of one class. A model with no such list (a zoo CNN,
    a non-transformers module) gives ``[]``.
    """
    for module in model.modules():
        count = getattr(getattr(module, "config", None), "num_hidden_layers", None)
        if not isinstance(count, int) or count < 1:
            continue
        for child in module.modules():
            if isinstance(child, nn.ModuleList) and len(child) == count and len({type(m) for m in child}) == 1:
                return list(child)
        return []
    return []
