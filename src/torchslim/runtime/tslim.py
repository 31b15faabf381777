from __future__ import annotations

from pathlib import Path

from torchslim.runtime._check import check_format


class TslimRuntime:
    """Runs a .tslim deep-compression file: weights are decoded to dense tensors at load and
    the model runs as an eager ``GraphModule`` (smaller on disk, same speed as eager)."""

    name = "tslim"

    def load(self, path: Path, manifest, *, device="cpu"):
        check_format(self.name, manifest, path, "tslim", ".tslim files")
        from torchslim.share import load_tslim

        return load_tslim(path, device=device)
