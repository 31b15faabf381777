"""Hugging Face transformers models (``hf:DIR``, ``hf:minilm``). Reserved; not yet built."""

from __future__ import annotations

from torchslim.errors import SpecError


def load_hf(spec: str, *, weights=None):
    raise SpecError(f"MODEL spec {spec!r}: Hugging Face models are not supported yet.")
