from __future__ import annotations

from pathlib import Path

import torch

from torchslim.errors import ArtifactError


class EagerRuntime:
    """Runs a ``.pt2`` ExportedProgram as an eager ``GraphModule``."""

    name = "eager"

    def load(self, path: Path, manifest, *, device="cpu"):
        if manifest.format != "exported":
            raise ArtifactError(f"The eager runtime runs exported .pt2 programs, not {manifest.format!r} artifacts.")
        from torchslim.quantize._ops import register_ops_for

        register_ops_for(path)  # quantized graphs call torchao / quantized_decomposed ops
        try:
            program = torch.export.load(str(path))
        except Exception as e:
            raise ArtifactError(f"Cannot load {str(path)!r} as an exported program ({type(e).__name__}: {e}).") from None
        module = program.module()
        return module.to(device) if torch.device(device).type != "cpu" else module
