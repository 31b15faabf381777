"""PyTorch -> an AOTInductor package (``.pt2``): the model compiled ahead of time to a shared
library plus its weights, loadable with no Python graph capture (``aoti_load_package``).

The package is compiled for the device of the example inputs (a CPU package does not run on
CUDA and vice versa) with a dynamic batch axis, and a dynamic sequence axis for token inputs
(one kernel set for every length up to the model's maximum, no buckets). Compiling costs 20-60 s of C++ build on a
small CPU; what it buys is no per-call Python/dispatcher overhead and Inductor's fused kernels.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from torchslim.core import export as core_export
from torchslim.core.files import atomic_write
from torchslim.core.manifest import Manifest, input_specs, write_manifest
from torchslim.core.padding import padding_extra
from torchslim.errors import ExportError
from torchslim.export import _common as common
from torchslim.export._config import ExportConfig
from torchslim.export._formats import ArtifactInfo


def write_aoti(module: nn.Module, path: Path, example_inputs: tuple[torch.Tensor, ...], config: ExportConfig, *,
               data: Any, info: ArtifactInfo, log: Callable[[str], None]) -> Path:
    """Compile ``module`` with AOTInductor into the ``.pt2`` package ``path`` (``config`` is an
    ``AOTIConfig``: nothing to choose; ``data`` is not used)."""
    task, input_names, steps = info.task, info.input_names, info.steps
    example = common.batch_of_two(tuple(t.detach() for t in example_inputs))
    device = example[0].device
    with common.eval_mode(module):
        program = _export_program(module, example)
        # A PT2E/torchao-quantized model runs reference (fp32) q/dq math in eager but real int8
        # kernels once compiled: judge it by the int8 tolerance, not float rounding.
        precision = "int8" if _is_quantized(program) else "fp32"
        batches = common.parity_inputs(example)
        references = common.reference_outputs(module, batches)
        padding = padding_extra(module, example, input_names)
    log("compiling with AOTInductor (tens of seconds)")
    with tempfile.TemporaryDirectory(prefix="torchslim-aoti-") as tmp:
        package = Path(tmp) / "model.pt2"
        try:
            with common.quiet(), torch.no_grad():
                torch._inductor.aoti_compile_and_package(program, package_path=str(package))
        except Exception as e:
            raise ExportError(f"AOTInductor could not compile {type(module).__name__}: {common.exporter_reason(e)}. "
                              "Export to ONNX instead (format onnx), or run it on the compile runtime.") from None
        compiled = torch._inductor.aoti_load_package(str(package))
        parity = _parity(compiled, batches, references, precision, type(module).__name__)
        log(f"AOTI parity with PyTorch: {parity.describe()}")
        atomic_write(path, lambda p: shutil.copyfile(package, p))
    extra = {"precision": precision, "device": device.type, "compiler": f"AOTInductor, torch {torch.__version__}",
             "parity": parity.as_dict()} | padding
    specs = input_specs(example, input_names, core_export.dynamic_axes(program))
    write_manifest(path, Manifest("aoti", "aoti", specs, task, steps or [], extra))
    return path


def _export_program(module: nn.Module, example: tuple[torch.Tensor, ...]) -> torch.export.ExportedProgram:
    return core_export.export_program(module, example, context=common.quiet,
                                      advice="Or export to ONNX (format onnx).")


def _is_quantized(program: torch.export.ExportedProgram) -> bool:
    return any("quantize" in str(node.target) for node in program.graph.nodes if node.op == "call_function")


def _parity(compiled, batches, references, precision: str, model_name: str) -> common.Parity:
    worst = None
    for batch, reference in zip(batches, references, strict=True):
        try:
            with torch.no_grad():
                out = common.flatten_outputs(compiled(*batch))
        except Exception as e:
            raise ExportError(f"The AOTInductor package of {model_name} fails on a batch of {len(batch[0])}: "
                              f"{common.exporter_reason(e)}.") from None
        parity = common.compare(reference, out, precision)
        if not parity.ok:
            raise ExportError(f"The AOTInductor package of {model_name} does not match PyTorch on a batch of "
                              f"{len(batch[0])}: {parity.describe()}.")
        worst = parity if worst is None or parity.max_abs_diff > worst.max_abs_diff else worst
    return worst
