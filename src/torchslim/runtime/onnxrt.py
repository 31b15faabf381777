"""ONNX Runtime: runs ``.onnx`` artifacts; takes and returns torch tensors.

Sessions are built from the artifact's ``OrtSettings`` (``runtime._settings``; recorded in its
manifest, defaults otherwise): every graph optimization ORT has (ORT_ENABLE_ALL: constant
folding, node fusions, layout changes), as many intra-op threads as torch uses, so a comparison
with eager PyTorch is thread-for-thread, and worker threads that stop spinning after a call. On ``device="cuda"`` the CUDA execution provider is
used when this onnxruntime build has it; a CPU-only build falls back to the CPU provider and
says so (outputs still come back on the input's device).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from torchslim.core.log import say
from torchslim.errors import ArtifactError
from torchslim.runtime._check import check_format
from torchslim.runtime._settings import OrtSettings, resolved_threads, settings_from_manifest


def providers_for(device: str | torch.device) -> list[str]:
    if torch.device(device).type != "cuda":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    say("notice: this onnxruntime build has no CUDA execution provider (install onnxruntime-gpu); "
        "running the ONNX model on the CPU provider instead.")
    return ["CPUExecutionProvider"]


_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
           "all": "ORT_ENABLE_ALL"}


def session_options(settings: OrtSettings | None = None) -> ort.SessionOptions:
    """ORT session options for ``settings`` (defaults: see ``OrtSettings``)."""
    settings = settings or OrtSettings()
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _LEVELS[settings.graph_optimization_level])
    options.intra_op_num_threads = resolved_threads(settings.intra_op_threads)
    # sequential: one op at a time, parallelism lives inside the ops; parallel uses the inter-op pool
    options.execution_mode = (ort.ExecutionMode.ORT_PARALLEL if settings.execution_mode == "parallel"
                              else ort.ExecutionMode.ORT_SEQUENTIAL)
    options.inter_op_num_threads = settings.inter_op_threads
    # Spinning workers keep a core busy after each call: off, a timed neighbour is not slowed.
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if settings.allow_spinning else "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "1" if settings.allow_spinning else "0")
    options.log_severity_level = 3  # errors only; ORT warns about every unused initializer
    return options


def make_session(model: str | Path | bytes, device: str | torch.device = "cpu",
                 settings: OrtSettings | None = None) -> ort.InferenceSession:
    options = session_options(settings)
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


def _load_inline(path: Path, device, first_error: Exception, settings: OrtSettings | None = None) -> ort.InferenceSession:
    """ORT cannot read some tensors stored as external data (e.g. a Reshape's target shape);
    onnx can, so a model with external data gets a second chance as one inline ModelProto."""
    import onnx

    try:
        return make_session(onnx.load(str(path), load_external_data=True).SerializeToString(), device, settings)
    except Exception:
        reason = str(first_error).strip().splitlines()[0] if str(first_error).strip() else type(first_error).__name__
        raise ArtifactError(f"ONNX Runtime cannot load {str(path)!r}: {reason}") from None


class OnnxRuntime:
    name = "onnxruntime"

    def load(self, path: Path, manifest, *, device="cpu") -> OnnxModel:
        check_format(self.name, manifest, path, "onnx", ".onnx models")
        settings = settings_from_manifest(manifest, self.name)
        try:
            session = make_session(path, device, settings)
        except Exception as e:  # ORT raises its own Fail/InvalidGraph types
            session = _load_inline(path, device, e, settings)
        expected = [spec.name for spec in manifest.inputs]
        model = OnnxModel(session, device, manifest, path)
        if expected and model.input_names != expected:
            raise ArtifactError(f"{str(path)!r} takes inputs {model.input_names} but its manifest says {expected}; "
                                "the two files do not belong together.")
        return model
