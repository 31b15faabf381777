"""Models and data every benchmark loads the same way: zoo models on digits, and MiniLM on the
sentences file that ships with torchslim."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import torch

from benchmarks._harness._environment import ROOT

SENTENCES = ROOT / "src" / "torchslim" / "hf" / "sentences.txt"
MINILM = "hf:minilm"
MINILM_DATA = f"text:{SENTENCES}"
MINILM_INPUTS = ["input_ids", "attention_mask"]


def load_zoo(name: str, data: str = "digits", quiet: bool = False):
    """(ModelHandle, DataBundle) of a zoo model and built-in data; progress goes to stderr."""
    from torchslim.specs import resolve

    return resolve(name, data, log=(lambda _m: None) if quiet else (lambda m: print(m, file=sys.stderr)))


def load_minilm():
    """(the fp32 model in eval mode, its DataBundle) for every MiniLM benchmark, quietly and seeded."""
    warnings.filterwarnings("ignore")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)
    handle, bundle = load_zoo(MINILM, MINILM_DATA, quiet=True)
    return handle.model.eval(), bundle


def singles(split) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each sentence of a text split alone, cut to its own length (no padding)."""
    ids, mask = split.input_ids, split.attention_mask
    return [(ids[i:i + 1, :n], mask[i:i + 1, :n]) for i, n in enumerate(mask.sum(1).tolist())]


def full_length(test, rows: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``rows`` x ``length`` token ids that are all real (no padding): the held-out sentences'
    tokens, [CLS]/[SEP] kept, run together and repeated as needed."""
    tokens = torch.cat([ids[: int(m.sum())] for ids, m in zip(test.input_ids, test.attention_mask, strict=True)])
    repeats = -(-rows * length // len(tokens))
    ids = tokens.repeat(repeats)[: rows * length].reshape(rows, length)
    return ids, torch.ones_like(ids)


def results_path(name: str) -> Path:
    return ROOT / "benchmarks" / "results" / f"{name}.json"


__all__ = ["MINILM", "MINILM_DATA", "MINILM_INPUTS", "SENTENCES", "full_length", "load_minilm", "load_zoo",
           "results_path", "singles"]
