"""Where torchslim keeps things between runs (trained zoo models), outside the repo."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """``$TORCHSLIM_CACHE`` or ``$XDG_CACHE_HOME/torchslim`` (default ``~/.cache/torchslim``)."""
    root = os.environ.get("TORCHSLIM_CACHE")
    if root:
        base = Path(root)
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "torchslim"
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
