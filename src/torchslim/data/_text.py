"""``text:FILE`` data. Reserved here; the Hugging Face support fills it in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torchslim.data._bundle import DataBundle
from torchslim.errors import SpecError


def load_text(spec: str, path: Path, *, tokenizer: Any = None, seed: int = 0) -> DataBundle:
    raise SpecError(f"{spec}: text data is not supported yet; it needs an hf: model's tokenizer.")
