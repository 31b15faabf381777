"""OpenVINO: runs OpenVINO IR artifacts (``model.xml`` + its weights ``model.bin``) on the CPU
plugin; takes and returns torch tensors.

Compile settings, measured on all-MiniLM-L6-v2 (2 shared cores, AMD EPYC AVX2, openvino
2026.4, one process, interleaved, 50 ms pause before each call; the host's load average was
5-10, so only large differences mean anything; ``benchmarks/minilm_openvino.py``):

- ``PERFORMANCE_HINT``: the same IR, median ms at b1x128 / b32x128 / a 10-token sentence:
  LATENCY 104 / 2925 / 26, THROUGHPUT 115 / 2501 / 25 (second run: 118 / 2898 / 27 vs
  117 / 2374 / 31). Equal at batch 1; THROUGHPUT's 2 streams of 1 thread were faster at
  batch 32 on the contended host. LATENCY is kept: a ``model(*inputs)`` call is one
  synchronous request, which THROUGHPUT serves with one stream's share of the cores.
- ``INFERENCE_NUM_THREADS`` = torch's threads, ``INFERENCE_PRECISION_HINT`` explicit or left
  to OpenVINO: LATENCY 33.8 / 137.0 ms (10 / 128 tokens), +threads=2 29.2 / 137.8, +f32
  29.9 / 138.4, both 30.1 / 137.4: no difference on this 2-core host, where OpenVINO's default
  is 2 threads anyway. Threads are set so that on a bigger host the comparison with eager
  PyTorch and ONNX Runtime stays thread-for-thread.
- ``INFERENCE_PRECISION_HINT`` is the manifest's ``inference_precision``: f32, or bf16 for
  a bf16 export. bf16 only runs in bf16 on CPUs with AVX512-BF16 or AMX; elsewhere the
  plugin silently keeps f32 (measured here), which ``model.execution_precision`` reports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from torchslim.core.log import say
from torchslim.errors import ArtifactError
from torchslim.runtime._check import check_format
from torchslim.runtime._settings import OpenVINOSettings, resolved_threads, settings_from_manifest


def weights_path(xml: Path) -> Path:
    """The IR's weights file: the ``.bin`` beside the ``.xml``."""
    return Path(xml).with_suffix(".bin")


def check_weights(xml: Path, manifest: Any) -> Path:
    """The ``.bin`` must exist and have the size recorded when it was written: OpenVINO itself
    reads a truncated file past its end, or fails deep in a constant with an unhelpful message."""
    bin_path = weights_path(xml)
    if not bin_path.is_file():
        raise ArtifactError(f"OpenVINO artifact {str(xml)!r} has no weights file {bin_path.name!r} beside it; an IR "
                            "is two files (.xml graph + .bin weights): keep them together, or re-export.")
    expected = manifest.extra.get("weights_bytes")
    actual = bin_path.stat().st_size
    if expected is not None and actual != expected:
        raise ArtifactError(f"OpenVINO weights file {str(bin_path)!r} is {actual:,} bytes, but {expected:,} were "
                            "written: it is truncated or belongs to another export. Re-export the model.")
    return bin_path


def compile_config(inference_precision: str = "f32", settings: OpenVINOSettings | None = None) -> dict[str, Any]:
    """Compile properties for ``settings`` (``runtime._settings``); the precision hint is always
    explicit: unset, the CPU plugin runs bf16 on CPUs with native bf16, an fp32 artifact too."""
    settings = settings or OpenVINOSettings()
    config: dict[str, Any] = {
        "PERFORMANCE_HINT": settings.performance_hint,
        "INFERENCE_NUM_THREADS": resolved_threads(settings.threads),
        "INFERENCE_PRECISION_HINT": settings.inference_precision or inference_precision,
    }
    if settings.num_streams is not None:
        config["NUM_STREAMS"] = settings.num_streams
    return config


class OpenVINOModel:
    """``model(*inputs)`` -> a tensor (or a tuple of tensors when the graph has several outputs)."""

    def __init__(self, compiled: Any, device: str | torch.device = "cpu") -> None:
        self.compiled = compiled
        self.device = torch.device(device)
        self.request = compiled.create_infer_request()
        self.input_names = [port.get_any_name() for port in compiled.inputs]
        self.execution_precision = compiled.get_property("INFERENCE_PRECISION_HINT").to_string()

    def __call__(self, *inputs: torch.Tensor, **named: torch.Tensor) -> Any:
        if len(inputs) + len(named) != len(self.input_names):
            raise TypeError(f"this OpenVINO model takes {len(self.input_names)} inputs ({', '.join(self.input_names)}), "
                            f"got {len(inputs) + len(named)}")
        feed = dict(zip(self.input_names, inputs, strict=False))
        feed.update(named)
        out_device = next(iter(feed.values())).device if feed else self.device
        arrays = {name: _to_numpy(t) for name, t in feed.items()}
        # share_outputs=False (the default) copies the results out of the request's buffers,
        # which the next call overwrites.
        results = self.request.infer(arrays)
        outputs = [torch.from_numpy(np.ascontiguousarray(results[port])).to(out_device) for port in self.compiled.outputs]
        return outputs[0] if len(outputs) == 1 else tuple(outputs)


def _to_numpy(t: Any) -> np.ndarray:
    if isinstance(t, torch.Tensor):
        return t.detach().cpu().contiguous().numpy()
    return np.asarray(t)


def compile_ir(path: Path, manifest: Any) -> Any:
    """Read and compile the IR on the CPU plugin; ArtifactError when OpenVINO cannot."""
    import openvino as ov

    bin_path = check_weights(path, manifest)
    core = ov.Core()
    try:
        model = core.read_model(str(path), str(bin_path))
        settings = settings_from_manifest(manifest, "openvino")
        return core.compile_model(model, "CPU", compile_config(manifest.extra.get("inference_precision", "f32"), settings))
    except Exception as e:  # OpenVINO raises RuntimeError with a multi-line C++ trace
        lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip() and not ln.strip().startswith("Check ")]
        reason = lines[-1] if lines else type(e).__name__
        raise ArtifactError(f"OpenVINO cannot load {str(path)!r}: {reason}") from None


def compile_in_memory(model: Any, inference_precision: str = "f32") -> OpenVINOModel:
    """An in-memory ``ov.Model`` compiled as ``load`` compiles an IR: the OpenVINO export
    measures its int8 tries this way before writing one."""
    import openvino as ov

    return OpenVINOModel(ov.Core().compile_model(model, "CPU", compile_config(inference_precision)))


class OpenVINORuntime:
    name = "openvino"

    def load(self, path: Path, manifest, *, device="cpu") -> OpenVINOModel:
        check_format(self.name, manifest, path, "openvino", "OpenVINO IR (.xml + .bin)")
        if torch.device(device).type != "cpu":
            say("notice: torchslim runs OpenVINO on its CPU plugin; outputs come back on the input's device.")
        model = OpenVINOModel(compile_ir(Path(path), manifest), device)
        expected = [spec.name for spec in manifest.inputs]
        if expected and model.input_names != expected:
            raise ArtifactError(f"{str(path)!r} takes inputs {model.input_names} but its manifest says {expected}; "
                                "the files do not belong together.")
        return model
