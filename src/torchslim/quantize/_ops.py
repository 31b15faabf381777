"""Operator libraries a saved quantized program needs before ``torch.export.load`` can read it.

A PT2E int8 graph calls ``quantized_decomposed.*`` ops and a torchao graph ``torchao.*`` ops and
tensor subclasses; both are registered by importing torchao. Loading an artifact checks its
graph for them, so a fp32 artifact never pays torchao's import time.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

_MARKERS = (b"quantized_decomposed.", b"torchao.")


def needs_torchao(path: str | Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                if "/models/" in name and name.endswith(".json"):
                    graph = archive.read(name)
                    if any(marker in graph for marker in _MARKERS):
                        return True
    except (OSError, zipfile.BadZipFile):
        return False  # torch.export.load reports an unreadable file with its own message
    return False


def register_ops_for(path: str | Path) -> None:
    """Import torchao (quietly) when the program at ``path`` uses its ops."""
    if needs_torchao(path):
        from torchslim.quantize._common import import_torchao

        import_torchao()
