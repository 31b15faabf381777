from __future__ import annotations

from pathlib import Path

from torchslim.errors import ArtifactError


class TslimRuntime:
    """Runs a .tslim deep-compression file: weights are decoded to dense tensors at load and
    the model runs as an eager ``GraphModule`` (smaller on disk, same speed as eager)."""

    name = "tslim"

    def load(self, path: Path, manifest, *, device="cpu"):
        if manifest.format != "tslim":
            raise ArtifactError(f"The tslim runtime runs .tslim files, not {manifest.format!r} artifacts.")
        from torchslim.share import load_tslim

        return load_tslim(path, device=device)
