"""AOTInductor: runs ``.pt2`` AOTInductor packages (compiled shared library + weights).

Loading maps the library and its weights; calls go straight to compiled code with no graph
capture. A package runs only on the device type it was compiled for (recorded in the
manifest). Token models are compiled with a dynamic sequence axis, so one package serves every
length in the manifest's range; inputs outside it are refused before the call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch._inductor  # noqa: F401  (the loader; imported here so memory probes count it as baseline)

from torchslim.errors import ArtifactError, UnsupportedError
from torchslim.runtime._check import check_format


class AOTIModel:
    """``model(*inputs)`` -> a tensor (a tuple when the package returns several)."""

    def __init__(self, compiled: Any, manifest: Any = None, path: Path | None = None) -> None:
        self.compiled = compiled
        self.manifest, self.path = manifest, path

    def __call__(self, *inputs: torch.Tensor) -> Any:
        if self.manifest is not None:
            # Outside its compiled ranges the package fails in C++ with no useful message.
            self.manifest.check_inputs(inputs, self.path or "this package")
        out = self.compiled(*inputs)
        if isinstance(out, (list, tuple)):
            return out[0] if len(out) == 1 else tuple(out)
        return out


class AOTIRuntime:
    name = "aoti"

    def load(self, path: Path, manifest, *, device="cpu") -> AOTIModel:
        check_format(self.name, manifest, path, "aoti", "AOTInductor packages", ", or re-export with `torchslim export --format pt2`")
        built_for = manifest.extra.get("device", "cpu")
        wanted = torch.device(device)
        if wanted.type != built_for:
            raise UnsupportedError(f"{str(path)!r} was compiled for {built_for} and cannot run on {wanted.type}; "
                                   f"re-export it on a {wanted.type} machine (`torchslim export --format pt2 --device {wanted.type}`).")
        device_index = wanted.index if wanted.index is not None else (-1 if wanted.type == "cpu" else torch.cuda.current_device())
        try:
            compiled = torch._inductor.aoti_load_package(str(path), device_index=device_index)
        except Exception as e:
            raise ArtifactError(f"Cannot load the AOTInductor package {str(path)!r} ({type(e).__name__}: "
                                f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}). It must be loaded by the "
                                "torch version that compiled it.") from None
        return AOTIModel(compiled, manifest, path)
