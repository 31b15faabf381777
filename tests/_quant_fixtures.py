"""Shared by the quantization tests: trained zoo models from one shared cache."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ.setdefault("TORCHSLIM_CACHE", str(Path(tempfile.gettempdir()) / "torchslim-test-cache"))
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path(tempfile.gettempdir()) / "torchslim-test-inductor"))

_MODELS: dict = {}


def trained(name: str):
    """(trained model in eval mode, digits bundle); zoo models train once per cache."""
    from torchslim.specs import resolve

    if name not in _MODELS:
        handle, bundle = resolve(name, "digits", log=lambda _m: None)
        _MODELS[name] = (handle.model.eval(), bundle)
    return _MODELS[name]
