from __future__ import annotations

from pathlib import Path

import torch

from torchslim.runtime._check import check_format
from torchslim.runtime._pt2 import load_exported_program


class EagerRuntime:
    """Runs a ``.pt2`` ExportedProgram as an eager ``GraphModule``."""

    name = "eager"

    def load(self, path: Path, manifest, *, device="cpu"):
        module = self.load_module(path, manifest, device=device)
        # The program's own guards fail with a bare AssertionError; this check runs first and
        # names the shapes the artifact takes (batch and sequence ranges from the manifest).
        module.register_forward_pre_hook(lambda _m, args: manifest.check_inputs(args, path))
        return module

    def load_module(self, path: Path, manifest, *, device="cpu") -> torch.nn.Module:
        """The program's module without the input check (for runtimes that check themselves)."""
        check_format(self.name, manifest, path, "exported", "exported .pt2 programs")
        from torchslim.quantize import register_ops_for

        register_ops_for(path)  # quantized graphs call torchao / quantized_decomposed ops
        program = load_exported_program(path)
        module = program.module()
        return module.to(device) if torch.device(device).type != "cpu" else module
