"""ONNX Runtime: runs ``.onnx`` artifacts; takes and returns torch tensors.

Sessions use every graph optimization ORT has (ORT_ENABLE_ALL: constant folding, node
fusions, layout changes) and as many intra-op threads as torch uses, so a comparison with
eager PyTorch is thread-for-thread. On ``device="cuda"`` the CUDA execution provider is
used when this onnxruntime build has it; a CPU-only build falls back to the CPU provider and
says so (outputs still come back on the input's device).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from torchslim._log import say
from torchslim.errors import ArtifactError


def providers_for(device: str | torch.device) -> list[str]:
    if torch.device(device).type != "cuda":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    say("notice: this onnxruntime build has no CUDA execution provider (install onnxruntime-gpu); "
        "running the ONNX model on the CPU provider instead.")
    return ["CPUExecutionProvider"]


def make_session(model: str | Path | bytes, device: str | torch.device = "cpu") -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1  # one graph at a time: parallelism lives inside the ops
    options.log_severity_level = 3  # errors only; ORT warns about every unused initializer
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=providers_for(device))


class OnnxModel:
    """``model(*inputs)`` -> a tensor (or a tuple of tensors when the graph has several outputs)."""

    def __init__(self, session: ort.InferenceSession, device: str | torch.device = "cpu", manifest: Any = None,
                 path: Path | None = None) -> None:
        self.session = session
        self.manifest, self.path = manifest, path
        self.device = torch.device(device)
        self.input_names = [i.name for i in session.get_inputs()]
        self.output_names = [o.name for o in session.get_outputs()]

    def __call__(self, *inputs: torch.Tensor, **named: torch.Tensor) -> Any:
        if len(inputs) + len(named) != len(self.input_names):
            raise TypeError(f"this ONNX model takes {len(self.input_names)} inputs ({', '.join(self.input_names)}), "
                            f"got {len(inputs) + len(named)}")
        if self.manifest is not None and not named:
            self.manifest.check_inputs(inputs, self.path or "this ONNX model")
        feed = dict(zip(self.input_names, inputs, strict=False))
        feed.update(named)
        out_device = next(iter(feed.values())).device if feed else self.device
        arrays = {name: _to_numpy(t) for name, t in feed.items()}
        outputs = [torch.from_numpy(np.ascontiguousarray(a)).to(out_device) for a in self.session.run(None, arrays)]
        return outputs[0] if len(outputs) == 1 else tuple(outputs)


def _to_numpy(t: Any) -> np.ndarray:
    if isinstance(t, torch.Tensor):
        return t.detach().cpu().contiguous().numpy()
    return np.asarray(t)


def _load_inline(path: Path, device, first_error: Exception) -> ort.InferenceSession:
    """ORT cannot read some tensors stored as external data (e.g. a Reshape's target shape);
    onnx can, so a model with external data gets a second chance as one inline ModelProto."""
    import onnx

    try:
        return make_session(onnx.load(str(path), load_external_data=True).SerializeToString(), device)
    except Exception:
        reason = str(first_error).strip().splitlines()[0] if str(first_error).strip() else type(first_error).__name__
        raise ArtifactError(f"ONNX Runtime cannot load {str(path)!r}: {reason}") from None


class OnnxRuntime:
    name = "onnxruntime"

    def load(self, path: Path, manifest, *, device="cpu") -> OnnxModel:
        if manifest.format != "onnx":
            raise ArtifactError(f"The onnxruntime runtime runs .onnx models, not {manifest.format!r} artifacts "
                                f"({str(path)!r}); load it with its own runtime ({manifest.runtime!r}).")
        try:
            session = make_session(path, device)
        except Exception as e:  # ORT raises its own Fail/InvalidGraph types
            session = _load_inline(path, device, e)
        expected = [spec.name for spec in manifest.inputs]
        model = OnnxModel(session, device, manifest, path)
        if expected and model.input_names != expected:
            raise ArtifactError(f"{str(path)!r} takes inputs {model.input_names} but its manifest says {expected}; "
                                "the two files do not belong together.")
        return model
