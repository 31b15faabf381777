"""PyTorch -> OpenVINO IR (``model.xml`` graph + ``model.bin`` weights beside it), fp32, bf16
(a compile-time hint) or int8 (NNCF post-training quantization, calibrated on real batches).

The artifact's path is the ``.xml``; the ``.bin`` has the same stem, and its size is recorded
in the manifest so a missing or truncated weights file is a clear ArtifactError at load time.
``torchslim.artifacts.artifact_files`` lists both, so reported sizes count both.

Conversion is ``openvino.convert_model`` on the PyTorch module (OpenVINO's PyTorch frontend)
with every batch axis, and the sequence axis of token inputs, declared dynamic (-1). Measured
on all-MiniLM-L6-v2 against converting torchslim's dynamo ONNX export instead: see
``_CONVERSION_NOTE``. Weights are saved uncompressed (``compress_to_fp16=False``):
``openvino.save_model`` would otherwise halve them to fp16 without being asked.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from torchslim.core.export import is_token_input
from torchslim.core.files import atomic_write
from torchslim.core.manifest import Manifest, input_specs, write_manifest
from torchslim.errors import ExportError
from torchslim.export import _common as common
from torchslim.export import _template as template
from torchslim.export._config import ExportConfig
from torchslim.export._formats import ArtifactInfo
from torchslim.export._openvino_quant import quantize_nncf

_CONVERSION_NOTE = "openvino.convert_model(torch module)"


def write_openvino(module: nn.Module, path: Path, example_inputs: tuple[torch.Tensor, ...], config: ExportConfig, *,
                   data: Any, info: ArtifactInfo, log: Callable[[str], None]) -> Path:
    """Write ``module`` as OpenVINO IR at ``path`` (the ``.xml``; the ``.bin`` beside it);
    returns ``path``. ``OpenVINOInt8Config`` is NNCF int8 calibrated on ``data`` (a DataBundle,
    whose train split is used, or an iterable of input tuples), with its SmoothQuant and fallback
    (``torchslim.export._openvino_quant``); the steps are ``torchslim.export._template``'s."""
    import openvino as ov

    prepared = template.prepare(module, example_inputs, config, data, info)
    module, example, names, tuning = prepared.module, prepared.example, prepared.names, prepared.tuning
    samples = common.calibration_samples(prepared.batches, names)
    with common.eval_mode(module):
        converted, groups = module, []
        if prepared.calibrated and tuning.smoothquant == "auto":
            converted, groups = template.smoothed(module, example, samples, "auto", log, before="the OpenVINO conversion")
        log(f"converting to OpenVINO IR ({_CONVERSION_NOTE}, openvino {ov.__version__.split('-')[0]})")
        model = convert(converted, example, names)
        parity_batches = _parity_batches(module, example)
        references = common.reference_outputs(module, parity_batches)
    extra: dict[str, Any] = {"quantize": "none", "precision": config.precision,
                             "inference_precision": "bf16" if config.precision == "bf16" else "f32"} | prepared.padding
    if prepared.calibrated:
        model, quantization = quantize_nncf(model, samples, names, transformer=any(is_token_input(t) for t in example),
                                            tuning=tuning, smoothed_layers=sum(len(g.linears) for g in groups),
                                            fallback_inputs=(module, converted, data), log=log)
        extra |= {"quantize": "nncf", "precision": "int8",
                  "quantization": quantization | {"calibration_batches": len(prepared.batches)}}
    manifest = Manifest("openvino", "openvino", input_specs(example, names), info.task, info.steps or [], extra)
    _write(model, path, manifest, (parity_batches, references), type(module).__name__, log)
    return path


def _write(model: Any, path: Path, manifest: Manifest, parity_inputs: tuple[list, list], model_name: str,
           log: Callable[[str], None]) -> None:
    """Save ``model`` as IR, check its parity as ``torchslim.load`` runs it, then write the
    ``.bin``, the ``.xml`` and the manifest at ``path``."""
    import openvino as ov

    extra = manifest.extra
    with tempfile.TemporaryDirectory(prefix="torchslim-openvino-") as tmp:
        xml = Path(tmp) / "model.xml"
        ov.save_model(model, str(xml), compress_to_fp16=False)
        bin_file = xml.with_suffix(".bin")
        extra |= {"converter": f"{_CONVERSION_NOTE}, openvino {ov.__version__.split('-')[0]}, torch {torch.__version__}",
                  "weights_file": path.with_suffix(".bin").name, "weights_bytes": bin_file.stat().st_size,
                  "dynamic_axes": {p.get_any_name(): [i for i, d in enumerate(p.get_partial_shape()) if d.is_dynamic]
                                   for p in model.inputs}}
        parity, execution = check_parity(xml, manifest, *parity_inputs, extra["precision"], model_name,
                                         enforce=template.parity_enforced(extra.get("quantization", {})))
        log(f"OpenVINO parity with PyTorch: {parity.describe()}")
        extra |= {"parity": parity.as_dict(), "execution_precision": execution}
        # Weights first: a reader that finds the .xml finds its .bin complete.
        atomic_write(path.with_suffix(".bin"), lambda p: shutil.copyfile(bin_file, p))
        atomic_write(path, lambda p: shutil.copyfile(xml, p))
        write_manifest(path, manifest)


def convert(module: nn.Module, example: tuple[torch.Tensor, ...], names: list[str]) -> Any:
    """The ov.Model of ``module``: batch axes dynamic, token inputs' sequence axes dynamic,
    inputs and outputs named like the manifest's."""
    import openvino as ov

    example = common.batch_of_two(example)
    shapes = []
    for t in example:
        dims = [-1, *t.shape[1:]]
        if is_token_input(t):
            dims[1] = -1
        shapes.append(ov.PartialShape(dims))
    try:
        with common.quiet(), torch.no_grad():
            model = ov.convert_model(module, example_input=example, input=shapes)
    except Exception as e:
        raise ExportError(
            f"OpenVINO's converter (openvino.convert_model) could not convert {type(module).__name__}: "
            f"{common.exporter_reason(e)}. Models with data-dependent Python control flow or non-tensor outputs "
            "cannot be converted; rewrite that part with tensor ops, or export the submodule that does the tensor work."
        ) from None
    for port, name in zip(model.inputs, names, strict=True):
        port.get_tensor().set_names({name})
    outputs = ["output"] if len(model.outputs) == 1 else [f"output_{i}" for i in range(len(model.outputs))]
    for port, name in zip(model.outputs, outputs, strict=True):
        port.get_tensor().set_names({name})
    return model


def _parity_batches(module: nn.Module, example: tuple[torch.Tensor, ...]) -> list[tuple[torch.Tensor, ...]]:
    """The example batch, a batch of another size, and for token models a shorter sequence
    (proves the sequence axis is dynamic too; skipped if the model itself refuses it)."""
    batches = common.parity_inputs(common.batch_of_two(example))
    if any(is_token_input(t) for t in example) and example[0].dim() == 2 and example[0].shape[1] > 7:
        shorter = tuple(t[:, :7] if is_token_input(t) else t for t in batches[1])
        try:
            with torch.no_grad():
                module(*shorter)
            batches.append(shorter)
        except Exception:
            pass
    return batches


def check_parity(xml: Path, manifest: Manifest, batches: list[tuple[torch.Tensor, ...]],
                 references: list[tuple[torch.Tensor, ...]], precision: str, model_name: str, *,
                 enforce: bool = True) -> tuple[common.Parity, str]:
    """Run the IR as ``torchslim.load`` will on every batch; ExportError when it fails or
    diverges (``enforce=False``: a divergence is recorded, not raised). Returns the worst
    parity and the precision the CPU plugin actually runs in."""
    from torchslim.runtime.openvino import OpenVINOModel, compile_ir

    manifest.extra["weights_bytes"] = xml.with_suffix(".bin").stat().st_size
    model = OpenVINOModel(compile_ir(xml, manifest))
    worst: common.Parity | None = None
    for batch, reference in zip(batches, references, strict=True):
        shape = "x".join(str(n) for n in batch[0].shape[:2])
        try:
            out = model(*batch)
        except Exception as e:
            raise ExportError(f"The OpenVINO model of {model_name} fails on inputs of shape {shape}: "
                              f"{common.exporter_reason(e)}. The model's code probably takes a size from a constant "
                              "or from Python instead of the tensor (x.shape), so the converter baked it in.") from None
        parity = common.compare(reference, out if isinstance(out, tuple) else (out,), precision)
        if not enforce and not parity.ok:
            parity.tolerance += " (not enforced: accuracy-aware fallback measured the metric within its target)"
        elif not parity.ok:
            raise ExportError(f"The OpenVINO model of {model_name} does not match PyTorch on inputs of shape {shape}: "
                              f"{parity.describe()}." + ("" if precision == "fp32" else " This model loses too much in "
                                                         f"{precision}; keep it in fp32, or calibrate on more batches."))
        if worst is None or parity.max_abs_diff > worst.max_abs_diff:
            worst = parity
    assert worst is not None
    return worst, model.execution_precision
