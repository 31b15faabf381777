"""Where torchslim keeps things between runs (trained zoo models), outside the repo."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """``$TORCHSLIM_CACHE`` or ``$XDG_CACHE_HOME/torchslim`` (default ``~/.cache/torchslim``)."""
    root = os.environ.get("TORCHSLIM_CACHE")
    path = Path("~/.cache/torchslim").joinpath(*parts)
    try:
        if root:
            base = Path(root)
        else:
            base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "torchslim"
        path = base.joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
    except (OSError, RuntimeError) as e:  # HOME read-only or missing (RuntimeError: no home directory at all)
        from torchslim.errors import StorageError

        raise StorageError(f"Cannot create torchslim's cache folder {str(path)!r} ({getattr(e, 'strerror', None) or e}); "
                           "it keeps trained zoo models between runs. Set TORCHSLIM_CACHE (or XDG_CACHE_HOME) to a "
                           "writable folder, or fix HOME, then run the command again.") from None
    return path
