"""ONNX Runtime's own int8 quantization of an ONNX file: dynamic (weights int8, activations
quantized per batch at run time) and static (QDQ, per-channel weights, activation ranges
calibrated on real batches).

Two known traps are handled here rather than left to the user:
- ``quant_pre_process`` fails on dynamo exports saved with external data (it runs symbolic
  shape inference on a model whose weights it did not load). We load the model with its
  external data and hand the pre-processor one inline ModelProto; if symbolic shape
  inference still fails (some ops have no symbolic rule) we retry without it, and as a last
  resort drop the exporter's shape annotations and let ONNX re-infer them.
- The dynamo exporter writes ``value_info`` shapes that ORT's quantizer's own shape inference
  contradicts ("Inferred shape and existing shape differ"), so quantizing a raw export
  fails even for an MLP; the pre-processing above rewrites them.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from torchslim.errors import ExportError
from torchslim.export._common import Signature, exporter_reason, quiet

_INT8_TYPES = {onnx.TensorProto.INT8, onnx.TensorProto.UINT8}


def onnx_signature(model: onnx.ModelProto) -> Signature:
    """The inputs an ONNX graph takes: symbolic dims are free (None)."""
    initializers = {i.name for i in model.graph.initializer}
    signature = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        tensor_type = value.type.tensor_type
        dtype = torch.from_numpy(np.zeros(0, dtype=onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type))).dtype
        shape = [d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim]
        signature.append((dtype, shape))
    return signature


def prepare_for_quantization(source: Path, target: Path, log: Callable[[str], None] = lambda _m: None) -> str:
    """Write ``source`` pre-processed for quantization (inline weights) to ``target``; returns
    which path worked, for the manifest."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    failures = []
    for label, options in (("full", {}), ("without symbolic shape inference", {"skip_symbolic_shape": True})):
        model = onnx.load(str(source), load_external_data=True)
        try:
            with quiet():
                quant_pre_process(model, str(target), skip_symbolic_shape=options.get("skip_symbolic_shape", False))
            return f"quant_pre_process ({label})"
        except Exception as e:  # the pre-processor raises whatever its passes raise
            failures.append(f"{label}: {exporter_reason(e)}")
    log("quant_pre_process failed (" + "; ".join(failures) + "); quantizing with re-inferred shapes instead")
    model = onnx.load(str(source), load_external_data=True)
    del model.graph.value_info[:]
    model = onnx.shape_inference.infer_shapes(model)
    onnx.save_model(model, str(target), save_as_external_data=False)
    return "shape re-inference only (quant_pre_process failed)"


def _reader(batches: list[tuple[torch.Tensor, ...]], input_names: list[str]):
    """ORT's CalibrationDataReader over a list of input tuples (built lazily: importing the
    quantization package costs a second)."""
    from onnxruntime.quantization import CalibrationDataReader

    class BatchReader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = [{n: t.numpy() for n, t in zip(input_names, batch, strict=True)} for batch in batches]
            self.position = 0

        def get_next(self) -> dict[str, np.ndarray] | None:
            if self.position >= len(self.feeds):
                return None
            self.position += 1
            return self.feeds[self.position - 1]

        def rewind(self) -> None:
            self.position = 0

    return BatchReader()


def quantize_file(
    source: Path,
    target: Path,
    method: str,
    *,
    calibration: list[tuple[torch.Tensor, ...]] | None = None,
    symmetric_activations: bool = False,
    log: Callable[[str], None] = lambda _m: None,
) -> dict[str, Any]:
    """Quantize ``source`` into a single self-contained ``target``; returns what was done.

    ``symmetric_activations`` makes activation zero-points 0, which TensorRT requires of QDQ
    models; ORT on CPU is free to use asymmetric ranges (slightly more accurate).
    """
    source, target = Path(source).resolve(), Path(target).resolve()
    with prepared_workdir(source, log) as (prepared, preprocessing):
        info = quantize_prepared(prepared, target, method, calibration=calibration,
                                 symmetric_activations=symmetric_activations)
    return info | {"preprocessing": preprocessing}


@contextlib.contextmanager
def prepared_workdir(source: Path, log: Callable[[str], None] = lambda _m: None):
    """A temp working directory holding ``source`` pre-processed for quantization; yields
    (prepared path, which pre-processing worked). Quantize it as often as needed inside."""
    # ORT's pre-processing writes a <uuid>.data external-data file into the working directory
    # for models over its inline limit (MiniLM's 90 MB): work inside the temp dir so nothing of
    # the user's current directory is touched.
    source = Path(source).resolve()
    with tempfile.TemporaryDirectory(prefix="torchslim-quant-") as tmp, contextlib.chdir(tmp):
        prepared = Path(tmp) / "prepared.onnx"
        yield prepared, prepare_for_quantization(source, prepared, log)


def quantize_prepared(
    prepared: Path,
    target: Path,
    method: str,
    *,
    calibration: list[tuple[torch.Tensor, ...]] | None = None,
    symmetric_activations: bool = False,
    op_types: list[str] | None = None,
    include: list[str] | None = None,
    exclude: list[str] | None = None,
    ranges_cache: Path | None = None,
) -> dict[str, Any]:
    """ORT's quantizer on a pre-processed model. Static only: ``op_types`` limits the op types
    quantized (None: all ORT supports), ``include`` the only nodes quantized (None: all of
    those types), ``exclude`` nodes kept in float, and
    ``ranges_cache`` (a JSON path) reuses the calibrated ranges of an earlier call on the same
    model and op types (calibration is an inference pass per sample; exclusions do not change it)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    try:
        with quiet():
            if method == "dynamic":
                quantize_dynamic(prepared, target, per_channel=True, weight_type=QuantType.QInt8)
            elif method == "static":
                _static(prepared, target, calibration or [], symmetric_activations, (op_types, include, exclude),
                        ranges_cache)
            else:
                raise ValueError(f"unknown ONNX quantization method {method!r}")
    except ExportError:
        raise
    except Exception as e:
        raise ExportError(f"ONNX Runtime's {method} quantization failed: {exporter_reason(e)}. The fp32 export "
                          "itself works; export with quantize='none', or try the other method.") from None
    quantized = onnx.load(str(target), load_external_data=False)
    int8_weights = sum(1 for init in quantized.graph.initializer if init.data_type in _INT8_TYPES and len(init.dims) >= 1)
    if int8_weights == 0:
        # A "quantized" model with no int8 weights would be reported as int8 while being fp32.
        raise ExportError(f"ONNX Runtime's {method} quantization quantized no weight of this model (no Conv, MatMul "
                          "or Gemm it supports); it would run in fp32. Export without quantize.")
    return {"method": method, "int8_weight_tensors": int8_weights, "per_channel": True,
            "calibration_batches": len(calibration or []), "format": "QDQ" if method == "static" else "QOperator"}


def _static(prepared: Path, target: Path, calibration, symmetric: bool, selection, ranges_cache) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    op_types, include, exclude = selection
    names = [v.name for v in onnx.load(str(prepared), load_external_data=False).graph.input]
    # Only named nodes (a transformer's Linear layers): their outputs stay float, as PT2E
    # leaves a Linear's output; ORT would otherwise quantize each MatMul's output before the bias.
    linear_only = {"OpTypesToExcludeOutputQuantization": ["MatMul", "Gemm"]} if include is not None else {}
    quantize_static(
        prepared, target, _reader(calibration, names),
        quant_format=QuantFormat.QDQ, per_channel=True, op_types_to_quantize=op_types,
        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, nodes_to_quantize=include,
        nodes_to_exclude=exclude or None,
        calibrate_method=CalibrationMethod.MinMax, calibration_cache_path=ranges_cache,
        extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True} | linear_only,
    )
    if include is not None:
        float_consumers_read_float(target, set(include) - set(exclude or ()))


def float_consumers_read_float(path: Path, quantized: set[str]) -> int:
    """Give the float input back to the nodes that read a quantized activation but are not
    quantized themselves; returns how many inputs were rewired.

    ORT puts one QuantizeLinear/DequantizeLinear pair on a tensor and hands its dequantized
    value to every consumer: a LayerNorm output that feeds q, k, v and the residual Add puts
    the residual stream through int8 too, which PT2E does not (its observers sit on the
    Linear inputs only). ``quantized``: the names of the nodes the quantizer was told to quantize."""
    model = onnx.load(str(path), load_external_data=False)
    producer = {o: n for n in model.graph.node for o in n.output}
    float_of = {}  # DequantizeLinear output -> the float tensor its QuantizeLinear read
    for node in model.graph.node:
        q = producer.get(node.input[0]) if node.op_type == "DequantizeLinear" else None
        if q is not None and q.op_type == "QuantizeLinear":
            float_of[node.output[0]] = q.input[0]
    rewired = 0
    for node in model.graph.node:
        if node.name in quantized or node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        for i, name in enumerate(node.input):
            if name in float_of:
                node.input[i] = float_of[name]
                rewired += 1
    if rewired:
        onnx.save_model(model, str(path), save_as_external_data=False)
    return rewired
