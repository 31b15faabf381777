"""The tensorrt runtime. Without CUDA or the tensorrt package every entry point raises
UnsupportedError saying what is missing (tested everywhere); the GPU tests build and run real
engines and skip where there is no GPU (TensorRT support is untested until they have run)."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from torchslim.artifacts import load, read_manifest
from torchslim.errors import UnsupportedError
from torchslim.export import export

HAVE_TENSORRT = torch.cuda.is_available() and importlib.util.find_spec("tensorrt") is not None
needs_tensorrt = pytest.mark.skipif(not HAVE_TENSORRT, reason="needs CUDA and the tensorrt package")


@pytest.mark.skipif(HAVE_TENSORRT, reason="TensorRT is available here")
def test_tensorrt_without_cuda_is_a_clear_error(tmp_path):
    with pytest.raises(UnsupportedError) as info:
        export(torch.nn.Linear(4, 2), tmp_path, (torch.randn(2, 4),), {"format": "tensorrt"})
    message = info.value.message
    assert "TensorRT" in message and "GPU" in message and "format onnx" in message
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(HAVE_TENSORRT, reason="TensorRT is available here")
def test_tensorrt_runtime_refuses_to_load_without_cuda(tmp_path):
    path = export(torch.nn.Linear(4, 2).eval(), tmp_path, (torch.randn(2, 4),), {"format": "onnx"})
    with pytest.raises(UnsupportedError, match="TensorRT"):
        load(path, runtime="tensorrt")


@pytest.mark.gpu
@needs_tensorrt
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_tensorrt_engine_round_trip(precision, tmp_path):
    from torchslim.bench import accuracy
    from torchslim.specs import resolve

    handle, bundle = resolve("digits-cnn", "digits", device="cuda", log=lambda _m: None)
    model = handle.model.eval()
    example = tuple(t.cuda() for t in bundle.example_inputs(2))
    path = export(model, tmp_path, example, {"format": "tensorrt", "precision": precision},
                  data=bundle if precision == "int8" else None)
    manifest = read_manifest(path)
    assert path.suffix == ".engine" and manifest.runtime == "tensorrt" and manifest.extra["precision"] == precision
    fn = load(path, device="cuda")
    out = fn(*(t.cuda() for t in bundle.example_inputs(7)))
    assert out.shape == (7, 10) and out.is_cuda
    assert accuracy(fn, bundle.test, device="cuda") >= accuracy(model, bundle.test, device="cuda") - 0.01
