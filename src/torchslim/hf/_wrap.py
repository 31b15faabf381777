"""Wrappers that give every Hugging Face model the same plain-tensor signature.

``forward(input_ids, attention_mask) -> Tensor`` with int64 inputs shaped (batch, seq): no
keyword arguments, no ``ModelOutput`` dataclasses, no ``token_type_ids``. That is what makes
``torch.export``, ``torch.onnx.export(dynamo=True)`` and every optimized artifact take the
same inputs and give the same output as the original model.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def mean_pool(last_hidden_state: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """sentence-transformers' pooling: the attention-masked mean of the token states, L2-normalized."""
    mask = attention_mask.unsqueeze(-1).to(last_hidden_state.dtype)
    summed = (last_hidden_state * mask).sum(dim=1)
    # clamp: an all-padding row would divide by zero; sentence-transformers uses the same 1e-9
    counts = mask.sum(dim=1).clamp(min=1e-9)
    return F.normalize(summed / counts, p=2, dim=1)


class SentenceEmbedder(nn.Module):
    """A transformers encoder (``AutoModel``) -> L2-normalized mean-pooled sentence embedding."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return mean_pool(hidden, attention_mask)


class SequenceClassifier(nn.Module):
    """A transformers ``AutoModelForSequenceClassification`` -> its logits (batch, num_labels)."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.classifier(input_ids=input_ids, attention_mask=attention_mask).logits
