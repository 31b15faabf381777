"""Hugging Face transformers models: ``hf:DIR`` and ``hf:minilm`` (all-MiniLM-L6-v2).

``load_hf(spec)`` loads a local encoder (``AutoModel``) or sequence classifier
(``AutoModelForSequenceClassification``) offline and wraps it so that it takes
``(input_ids, attention_mask)`` (int64, (batch, seq)) and returns a tensor: the L2-normalized
mean-pooled sentence embedding for encoders (task "embedding", metric fidelity), the logits
for classifiers (task "classification", metric accuracy). ``transformers`` is an optional
extra (``pip install 'torchslim[hf]'``) and is imported only here, on first use.

Which quantization configurations work on MiniLM on CPU, measured: docs/transformers.md.
"""

from __future__ import annotations

from torchslim.hf._layers import transformer_layers
from torchslim.hf._load import (
    DEFAULT_MAX_LENGTH,
    INPUT_NAMES,
    HFInfo,
    load_hf,
    reconcile_task,
    resolve_model_dir,
)
from torchslim.hf._wrap import SentenceEmbedder, SequenceClassifier, mean_pool

__all__ = [
    "DEFAULT_MAX_LENGTH",
    "INPUT_NAMES",
    "HFInfo",
    "SentenceEmbedder",
    "SequenceClassifier",
    "load_hf",
    "mean_pool",
    "reconcile_task",
    "resolve_model_dir",
    "transformer_layers",
]
