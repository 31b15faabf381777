from __future__ import annotations

from pathlib import Path

import torch

from torchslim.errors import ArtifactError
from torchslim.runtime._pt2 import load_exported_program


class EagerRuntime:
    """Runs a ``.pt2`` ExportedProgram as an eager ``GraphModule``."""

    name = "eager"

    def load(self, path: Path, manifest, *, device="cpu"):
        if manifest.format != "exported":
            raise ArtifactError(f"The eager runtime runs exported .pt2 programs, not {manifest.format!r} artifacts.")
        from torchslim.quantize._ops import register_ops_for

        register_ops_for(path)  # quantized graphs call torchao / quantized_decomposed ops
        program = load_exported_program(path)
        module = program.module()
        return module.to(device) if torch.device(device).type != "cpu" else module
