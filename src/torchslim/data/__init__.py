"""Data sets behind DATA spec strings, as one ``DataBundle`` shape for every task.

Every item of every split is ``(inputs, target)``: ``inputs`` is a tensor or a tuple of
tensors (the model's positional arguments; e.g. ``(input_ids, attention_mask)``), ``target``
a class index (classification) or ignored (embedding). Use ``as_args`` to call a model.
"""

from __future__ import annotations

from torchslim.data._bundle import DataBundle, as_args, loader, to_device
from torchslim.data._calibration import (
    Signature,
    calibration_batches,
    check_signature,
    signature_of,
)
from torchslim.data._corpus import english_corpus
from torchslim.data._evaluate import (
    accuracy,
    accuracy_counts,
    eval_mode,
    fidelity,
    fidelity_sums,
    predict,
    score_ratio,
    scorer,
)
from torchslim.data._specs import DATA_SPEC_HELP, load_data

__all__ = [
    "accuracy",
    "Signature",
    "calibration_batches",
    "check_signature",
    "signature_of",
    "accuracy_counts",
    "eval_mode",
    "fidelity_sums",
    "score_ratio",
    "scorer",
    "english_corpus",
    "fidelity",
    "predict","DataBundle", "as_args", "load_data", "loader", "to_device",
    "DATA_SPEC_HELP",
]
