"""PyTorch -> one self-contained ``.onnx`` file, checked three ways before it is written:
``onnx.checker``, a truly dynamic batch axis, and output parity with the PyTorch model
(on the example batch and on a reordered batch of another size) under ONNX Runtime.

The dynamo exporter (``torch.onnx.export(dynamo=True)``) is used: the legacy TorchScript
exporter traces with the example's sizes and can bake them into reshapes of attention code,
producing a file that loads but fails (or silently misbehaves) at any other batch or sequence
length. The parity check on a second batch size catches that class of bug whichever exporter
made the graph. One exception: ORT dynamic int8 of a BERT-like encoder first tries the
TorchScript export + ORT's transformer fusions (``_ort_fusion``: its patterns only match that
exporter's graph), checked also on a shorter sequence, and falls back to dynamo if it fails.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx
import torch
import torch.nn as nn

from torchslim.core import export as core_export
from torchslim.core.files import atomic_write
from torchslim.core.manifest import Manifest, input_specs, write_manifest
from torchslim.errors import ConfigError, ExportError
from torchslim.export import _common as common
from torchslim.export import _template as template
from torchslim.export._config import ExportConfig
from torchslim.export._formats import ArtifactInfo, output_path
from torchslim.export._onnx_parity import check_parity
from torchslim.export._ort_static import SCOPES, quantize_static_onnx
from torchslim.quantize import Int8Tuning

# Node metadata an artifact keeps (see _drop_debug_metadata).
_KEPT_NODE_METADATA = frozenset({SCOPES})


def write_onnx(module: nn.Module, path: Path, example_inputs: tuple[torch.Tensor, ...], config: ExportConfig, *,
               data: Any, info: ArtifactInfo, log: Callable[[str], None], symmetric_activations: bool = False) -> Path:
    """Export ``module`` to ONNX at ``path`` (fp32, or ORT int8 as ``config`` says: dynamic,
    static calibrated on ``data``, or weight-only: int8 weights, float compute); returns
    ``path``. Raises ``ExportError`` with the exporter's reason when the model cannot be
    exported or its outputs diverge.
    ``symmetric_activations`` (static only) zeroes activation zero-points, as TensorRT needs;
    the steps are ``torchslim.export._template``'s."""
    quantize = config.quantize
    prepared = template.prepare(module, example_inputs, config, data, info)
    module, example, names = prepared.module, prepared.example, prepared.names
    manifest = Manifest("onnx", "onnxruntime", [], info.task, info.steps or [], prepared.padding)
    with tempfile.TemporaryDirectory(prefix="torchslim-onnx-") as tmp:
        fused = _fused_encoder(module, example, names, quantize, Path(tmp), log)
        if fused is not None:  # an encoder whose graph ORT's transformer optimizer fuses
            _write_fused(fused, path, module, example, names, manifest, log)
            return path
        fp32 = Path(tmp) / "fp32.onnx"
        with common.eval_mode(module):
            ort_static = quantize == "static" and not symmetric_activations
            exported, samples = module, None
            if ort_static:
                exported, samples = _smoothed(module, example, prepared.batches, names, prepared.tuning, log)
            log("exporting to ONNX (torch.onnx.export, dynamo=True)")
            output_names, axes = write_fp32(exported, fp32, example, names)
            parity_batches = common.parity_inputs(common.batch_of_two(example))
            references = common.reference_outputs(module, parity_batches)
        final, extra = fp32, {"quantize": "none", "precision": "fp32"}
        if ort_static:
            final = Path(tmp) / "quantized.onnx"
            extra = _quantize_static(fp32, final, samples, len(prepared.batches), prepared.tuning,
                                     (module, exported, data), log)
        elif quantize == "weight-only":
            final = Path(tmp) / "int8_weights.onnx"
            extra = _int8_weights(fp32, final, log)
        elif quantize != "none":
            final = Path(tmp) / "quantized.onnx"
            extra = _quantize(fp32, final, quantize, prepared.batches or None, symmetric_activations, log)
        parity = _parity(final, parity_batches, references, extra, type(module).__name__, log)
        manifest.extra = extra | {"exporter": f"torch.onnx.export(dynamo=True), torch {torch.__version__}",
                                  "output_names": output_names} | prepared.padding
        manifest.inputs = input_specs(example, names, axes)
        _write(final, path, manifest, parity)
    return path


def quantize_onnx(artifact: str | Path, out: str | Path, config: Any, *, data: Any = None,
                  inputs: tuple[torch.Tensor, ...] | None = None, log: Callable[[str], None] = lambda _m: None) -> Path:
    """ORT int8 quantization of an fp32 ONNX artifact torchslim wrote, into a new artifact at
    ``out``. ``config``: ``OnnxDynamicInt8Config`` / ``OnnxStaticInt8Config`` (or ``"dynamic"``,
    ``"static"``, a mapping); static calibrates on ``data``. Parity is judged against the fp32
    ONNX model on ``inputs`` (default: the first calibration batch, else the manifest's examples)."""
    from torchslim.core.manifest import read_manifest
    from torchslim.export._config import ExportConfig, parse_export_config
    from torchslim.export._ort_quant import onnx_signature
    from torchslim.runtime.onnxrt import OnnxModel, make_session

    if not isinstance(config, ExportConfig):
        config = {"quantize": config} if isinstance(config, str) else config
        config = parse_export_config({"format": "onnx", **(config or {})}, "ONNX quantization")
    method = config.quantize
    if config.format != "onnx" or method not in ("dynamic", "static", "weight-only"):
        raise ConfigError(f"ONNX quantization {config.describe()}: use quantize dynamic, static or weight-only "
                          "(format onnx).")
    if isinstance(config, Int8Tuning) and config.tuned:
        raise ConfigError("smoothquant and fallback need the PyTorch model (SmoothQuant rescales its weights, "
                          "fallback ranks its layers): export it with export(..., OnnxStaticInt8Config(...)) instead.")

    source = Path(artifact)
    manifest = read_manifest(source)
    if manifest.format != "onnx" or manifest.extra.get("quantize", "none") != "none":
        raise ConfigError(f"{str(source)!r} is not an fp32 ONNX artifact (format {manifest.format!r}, quantize "
                          f"{manifest.extra.get('quantize', 'none')!r}); quantize the fp32 export.")
    path = output_path(out, "onnx")
    if path.resolve() == source.resolve():
        raise ConfigError(f"Write the quantized model to another path than its source {str(source)!r}.")
    calibration_data = None
    if method == "static":
        signature = onnx_signature(onnx.load(str(source), load_external_data=False))
        calibration_data = common.calibration_batches(data, signature, config.calibration_batches,
                                                      batch_size=config.batch_size)
    example = inputs or (calibration_data[0] if calibration_data else manifest.example_inputs(2))
    batches = common.parity_inputs(common.batch_of_two(tuple(t.cpu() for t in example)))
    # Through onnx.load: ORT cannot load some externally stored constants (Reshape shapes) itself.
    fp32 = OnnxModel(make_session(onnx.load(str(source), load_external_data=True).SerializeToString()))
    references = [common.flatten_outputs(fp32(*b)) for b in batches]
    with tempfile.TemporaryDirectory(prefix="torchslim-onnx-") as tmp:
        final = Path(tmp) / "quantized.onnx"
        if method == "static":  # per-sentence calibration and the operator choice; no fallback (no torch model)
            samples = _calibration_feeds(calibration_data, [spec.name for spec in manifest.inputs])
            quantized = _quantize_static(source, final, samples, len(calibration_data), Int8Tuning(), None, log)
        elif method == "weight-only":
            quantized = _int8_weights(source, final, log)
        else:
            quantized = _quantize(source, final, method, calibration_data, False, log)
        extra = dict(manifest.extra) | quantized
        parity = check_parity(final, batches, references, "int8", source.name)
        steps = [*manifest.steps, f"quantize(method={method}, backend=onnxruntime)"]
        _write(final, path, Manifest("onnx", "onnxruntime", manifest.inputs, manifest.task, steps, extra), parity)
    return path


def _fused_encoder(module, example, names, quantize, folder: Path, log):
    """ORT dynamic int8 of a BERT-like encoder goes through ORT's transformer fusions
    (``torchslim.export._ort_fusion``); None for every other model or when that path fails."""
    from torchslim.export._ort_fusion import encoder_config, fused_dynamic_int8

    if quantize != "dynamic" or (config := encoder_config(module)) is None:
        return None
    with common.eval_mode(module):
        return fused_dynamic_int8(module, example, names, config, folder, log)


def _quantize(source: Path, target: Path, method: str, calibration_data, symmetric: bool, log) -> dict[str, Any]:
    from torchslim.export._ort_quant import quantize_file

    log(f"ONNX Runtime {method} int8 quantization")
    info = quantize_file(source, target, method, calibration=calibration_data, symmetric_activations=symmetric, log=log)
    return {"quantize": method, "precision": "int8", "quantization": info}


def _int8_weights(source: Path, target: Path, log) -> dict[str, Any]:
    from torchslim.export._onnx_weights import store_int8_weights

    return {"quantize": "weight-only", "precision": "int8", "quantization": store_int8_weights(source, target, log)}


def _parity(final: Path, batches, references, extra: dict[str, Any], name: str, log) -> common.Parity:
    # A fallback that measured the metric within its target on the validation split is the
    # judge of an int8 model's accuracy; the example batch's cosine is then only recorded.
    parity = check_parity(final, batches, references, extra["precision"], name,
                          enforce=template.parity_enforced(extra.get("quantization", {})))
    log(f"ONNX parity with PyTorch: {parity.describe()}")
    return parity


def _write_fused(fused, path: Path, module, example, names, manifest: Manifest, log) -> None:
    final, extra, parity, output_names = fused
    log(f"ONNX parity with PyTorch: {parity.describe()}")
    manifest.extra = extra | {"output_names": output_names} | manifest.extra
    # The TorchScript export takes any batch and (token inputs) any length up to the model's limit.
    limit = core_export.sequence_limit(module, example)
    axes = [{0: (1, core_export.MAX_BATCH), **({1: (1, limit)} if core_export.is_token_input(t) else {})}
            for t in example]
    manifest.inputs = input_specs(example, names, axes)
    _write(final, path, manifest, parity)


def _smoothed(module, example, batches, names, tuning: Int8Tuning, log):
    """(the model to export, the calibration feeds): token models are calibrated one sentence
    at a time at its own length; with ``smoothquant``, a smoothed copy is exported."""
    samples = _calibration_feeds(batches, names)
    if tuning.smoothquant is None:
        return module, samples
    return template.smoothed(module, example, samples, tuning.smoothquant, log, before="the ONNX export")[0], samples


def _calibration_feeds(batches, names: list[str]):
    """Token models (an attention_mask input): one sentence at a time at its own length, so no
    pad position widens an activation range; other models: the batches as they are."""
    return common.calibration_samples(batches, names) if "attention_mask" in names else batches


def _quantize_static(fp32: Path, target: Path, samples, batches: int, tuning: Int8Tuning, fallback_inputs,
                     log) -> dict[str, Any]:
    log(f"ONNX Runtime static int8 quantization ({len(samples)} calibration feeds from {batches} batches"
        f"{', fallback auto' if tuning.fallback else ''})")
    info = quantize_static_onnx(fp32, target, samples=samples, tuning=tuning,
                                fallback_inputs=fallback_inputs if tuning.fallback else None, log=log)
    return {"quantize": "static", "precision": "int8", "quantization": info | {"calibration_batches": batches}}


def _write(final: Path, path: Path, manifest: Manifest, parity: common.Parity) -> None:
    _drop_debug_metadata(final)
    graph = onnx.load(str(final), load_external_data=False)
    manifest.extra |= {
        "opset": max((o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")), default=None),
        "dynamic_axes": dynamic_axes(graph),
        "parity": parity.as_dict(),
    }
    atomic_write(path, lambda p: shutil.copyfile(final, p))
    write_manifest(path, manifest)


def _drop_debug_metadata(final: Path) -> None:
    """Keep one piece of the provenance the dynamo exporter records on every node: its module
    path (``pkg.torch.onnx.name_scopes``, which says what a node came from and which the static
    int8 fallback matches layers by). The rest is debugging detail no deployed artifact needs:
    the Python stack trace (it names the user's source files and lines; 200 KB on MiniLM), the
    FX node, the class hierarchy and a namespace string repeating both. On the 69k-parameter ViT
    of examples/vit_blocks.py those were 72 KB of a 180 KB int8 file, more than its weights."""
    model = onnx.load(str(final), load_external_data=True)
    changed = False
    for node in [*model.graph.node, *(n for f in model.functions for n in f.node)]:
        kept = [p for p in node.metadata_props if p.key in _KEPT_NODE_METADATA]
        if len(kept) != len(node.metadata_props):
            del node.metadata_props[:]
            node.metadata_props.extend(kept)
            changed = True
    if changed:
        onnx.save_model(model, str(final), save_as_external_data=False)


def write_fp32(module: nn.Module, path: Path, example: tuple[torch.Tensor, ...],
               names: list[str]) -> tuple[list[str], list[core_export.DynamicAxes]]:
    """Export to one inline file at ``path``; returns the output names and each input's dynamic
    axes (batch, and sequence for token inputs, as ``torchslim.core.export`` gives them)."""
    example = common.batch_of_two(example)
    with torch.no_grad():
        outputs = common.flatten_outputs(module(*example))
    output_names = ["output"] if len(outputs) == 1 else [f"output_{i}" for i in range(len(outputs))]
    limit = core_export.sequence_limit(module, example)
    try:
        program = _export_dynamo(module, example, limit, names, output_names)
        # Inline weights: one file whose size is the artifact's real size (models > 2 GB
        # cannot be inline; torchslim's targets are far below that).
        with common.quiet():
            program.save(str(path), external_data=False)
    except Exception as e:
        raise ExportError(
            f"The ONNX exporter (torch.onnx.export, dynamo=True) could not export {type(module).__name__}: "
            f"{common.exporter_reason(e)}. Models with data-dependent Python control flow, .item()/.numpy() "
            "calls or non-tensor outputs cannot be exported; rewrite that part with tensor ops (torch.where, "
            "torch.cond), or export the submodule that does the tensor work."
        ) from None
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as e:
        raise ExportError(f"onnx.checker rejected the exported model of {type(module).__name__}: "
                          f"{common.exporter_reason(e)}. This is an exporter bug; please report it with the model.") from None
    baked = [v.name for v in onnx.load(str(path), load_external_data=False).graph.input
             if v.type.tensor_type.shape.dim and v.type.tensor_type.shape.dim[0].HasField("dim_value")]
    if baked:
        raise ExportError(f"The exported ONNX graph of {type(module).__name__} has a fixed batch size for input(s) "
                          f"{', '.join(baked)}: the model's code pins the batch dimension (e.g. reshape(2, -1) or a "
                          "size taken from a constant). Use x.shape[0] / reshape(x.shape[0], -1) instead.")
    exported = getattr(program, "exported_program", None)
    return output_names, core_export.dynamic_axes(exported) if exported is not None else None


def _export_dynamo(module: nn.Module, example, limit: int, names: list[str], output_names: list[str]):
    """``torch.onnx.export(dynamo=True)`` with torchslim.core.export's dynamic shapes; a model
    whose code pins the sequence axis is exported with that axis static (as the .pt2 is)."""
    token_inputs = any(core_export.is_token_input(t) for t in example)
    for dynamic_sequence in ([True, False] if token_inputs else [False]):
        shapes = core_export.dynamic_shapes(example, max_length=limit, dynamic_sequence=dynamic_sequence)
        try:
            with common.quiet(), torch.no_grad():
                return torch.onnx.export(module, example, dynamo=True, dynamic_shapes=shapes, input_names=names,
                                         output_names=output_names, external_data=False, verbose=False)
        except Exception as e:
            if not dynamic_sequence or "Constraints violated" not in str(e):
                raise
    raise AssertionError("unreachable")


def dynamic_axes(graph: onnx.ModelProto) -> dict[str, list[int]]:
    return {v.name: [i for i, d in enumerate(v.type.tensor_type.shape.dim) if not d.HasField("dim_value")]
            for v in graph.graph.input}
