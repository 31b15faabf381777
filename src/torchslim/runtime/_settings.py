"""Runtime settings: how an artifact is run, as a typed part of the candidate.

One settings class per runtime family; the chosen settings are written into the artifact's
manifest (``extra["runtime_settings"]``, tagged with the runtime they are for) and
``torchslim.load`` uses them, so the figures measured at optimize time are the figures a user
gets. Settings for another runtime than the one an artifact is loaded on are ignored (an ONNX
file tuned for onnxruntime and loaded on tensorrt runs with tensorrt's defaults).

Defaults, and why:
- ONNX Runtime: intra-op threads = torch's (a thread-for-thread comparison with eager), one
  inter-op thread, sequential execution, every graph optimization, and **spinning off**: ORT's
  worker threads otherwise keep spinning after a call and slow whatever runs next to them
  (another session, the next candidate being timed, a service's other work). Spinning buys a
  little at batch 1 when calls come back to back; it is a setting a recipe can fix, never a
  default, and the tuner does not try it (its gain is taken from the neighbours).
- OpenVINO: the LATENCY hint (one stream: a ``model(*inputs)`` call is one synchronous request),
  threads = torch's, and the precision the artifact was exported at. Left to itself the CPU
  plugin runs bf16 on CPUs with native bf16 (AMX / AVX512-BF16 Xeons: measured on this
  project's CI Xeon, ``INFERENCE_PRECISION_HINT`` reads back ``bfloat16`` when not set), so
  an fp32 artifact is compiled with ``f32`` explicitly and the effective precision is read
  back from the compiled model and recorded.
- torch runtimes (eager, compile, aoti): threads; None leaves the process's setting alone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

_Threads = Annotated[int, Field(ge=1, le=1024)]


class OrtSettings(BaseModel):
    """ONNX Runtime session options."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    runtime: Literal["onnxruntime"] = "onnxruntime"
    intra_op_threads: _Threads | None = Field(None, description="threads inside an op; None: as many as torch uses")
    inter_op_threads: _Threads = Field(1, description="threads running independent ops (parallel mode only)")
    allow_spinning: bool = Field(False, description="worker threads spin after a call (slows neighbours)")
    execution_mode: Literal["sequential", "parallel"] = "sequential"
    graph_optimization_level: Literal["disable", "basic", "extended", "all"] = "all"


class OpenVINOSettings(BaseModel):
    """OpenVINO CPU plugin compile properties."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    runtime: Literal["openvino"] = "openvino"
    performance_hint: Literal["LATENCY", "THROUGHPUT"] = "LATENCY"
    num_streams: _Threads | None = Field(None, description="None: what the hint chooses")
    inference_precision: Literal["f32", "bf16", "f16"] | None = Field(
        None, description="None: the precision the artifact was exported at (f32 for an fp32 export)")
    threads: _Threads | None = Field(None, description="None: as many as torch uses")


class TorchSettings(BaseModel):
    """eager / compile / aoti: torch's intra-op threads during a call."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    runtime: Literal["eager", "compile", "aoti"] = "eager"
    threads: _Threads | None = Field(None, description="None: leave the process's torch threads as they are")


RuntimeSettings = Annotated[OrtSettings | OpenVINOSettings | TorchSettings, Field(discriminator="runtime")]
_ADAPTER: TypeAdapter = TypeAdapter(RuntimeSettings)
SETTINGS_CLASSES: dict[str, type[BaseModel]] = {
    "onnxruntime": OrtSettings, "openvino": OpenVINOSettings,
    "eager": TorchSettings, "compile": TorchSettings, "aoti": TorchSettings,
}
MANIFEST_KEY = "runtime_settings"
PRECISION_KEY = "effective_precision"
TUNED_ON_KEY = "runtime_settings_tuned_on"  # {"cores": n}: thread counts were measured on that many cores


def default_settings(runtime: str) -> BaseModel | None:
    """The fixed setting every candidate ran with before tuning; None for runtimes without settings."""
    cls = SETTINGS_CLASSES.get(runtime)
    return None if cls is None else (cls(runtime=runtime) if cls is TorchSettings else cls())


def parse_settings(runtime: str, options: Mapping[str, Any] | BaseModel | None) -> BaseModel | None:
    """``options`` (a mapping as written in a recipe, or settings) as ``runtime``'s settings.
    Raises ValidationError (unknown keys, bad values) or ValueError (no settings for it)."""
    if options is None:
        return None
    if isinstance(options, BaseModel):
        options = options.model_dump()
    cls = SETTINGS_CLASSES.get(runtime)
    if cls is None:
        raise ValueError(f"runtime {runtime!r} has no settings (runtimes with settings: {', '.join(SETTINGS_CLASSES)})")
    data = dict(options)
    data.setdefault("runtime", runtime)
    return cls.model_validate(data)


def settings_from_manifest(manifest: Any, runtime: str) -> BaseModel | None:
    """The settings recorded in ``manifest`` when they are for ``runtime``, else its defaults.
    A manifest written before settings were recorded (or by hand, wrongly) runs on defaults."""
    raw = (manifest.extra or {}).get(MANIFEST_KEY) if manifest is not None else None
    if isinstance(raw, Mapping) and raw.get("runtime") == runtime:
        try:
            return _ADAPTER.validate_python(dict(raw))
        except ValidationError:
            pass
    return default_settings(runtime)


def with_settings(manifest: Any, settings: BaseModel | None) -> Any:
    """A copy of ``manifest`` carrying ``settings`` (the runtimes read them from it)."""
    import copy

    out = copy.copy(manifest)
    out.extra = dict(manifest.extra or {})
    if settings is not None:
        out.extra[MANIFEST_KEY] = settings.model_dump()
    return out


def write_settings(path: Any, settings: BaseModel | None, effective_precision: str | None = None,
                   tuned: bool = False) -> None:
    """Record ``settings`` (and the precision the runtime really runs at) in ``path``'s manifest;
    ``tuned``: they were measured on this machine (its core count is recorded with them).
    The artifact's files do not change, so their digests stay as written."""
    from torchslim.core.files import atomic_write_text
    from torchslim.core.manifest import manifest_path, read_manifest

    manifest = read_manifest(path)
    if settings is not None:
        manifest.extra[MANIFEST_KEY] = settings.model_dump()
        manifest.extra.pop(TUNED_ON_KEY, None)
        if tuned:
            manifest.extra[TUNED_ON_KEY] = {"cores": os.cpu_count()}
    if effective_precision is not None:
        manifest.extra[PRECISION_KEY] = effective_precision
    atomic_write_text(manifest_path(path), manifest.to_json())


def tuned_elsewhere(manifest: Any, settings: BaseModel | None) -> str | None:
    """A notice when ``settings`` fix thread counts that were tuned on a machine with another
    number of cores (a pick of 1 thread on a busy 2-core box is no pick for a 16-core server)."""
    tuned_on = (manifest.extra or {}).get(TUNED_ON_KEY)
    fixed = {k: v for k, v in (settings.model_dump() if settings is not None else {}).items()
             if k in ("intra_op_threads", "threads", "num_streams") and v is not None}
    if not isinstance(tuned_on, Mapping) or not fixed or tuned_on.get("cores") == os.cpu_count():
        return None
    return (f"notice: this artifact's runtime settings ({', '.join(f'{k}={v}' for k, v in fixed.items())}) were tuned "
            f"on a {tuned_on.get('cores')}-core machine, this one has {os.cpu_count()}; pass settings= to "
            "torchslim.load (or re-run optimize here) for settings measured on this machine.")


def resolved_threads(threads: int | None) -> int:
    return threads if threads is not None else torch.get_num_threads()


def thread_budget() -> dict[str, Any]:
    """What report.json's environment states: every runtime's threads under the default
    settings, so figures from two machines (or two runs) can be read alike."""
    ort = OrtSettings()
    return {
        "cores": os.cpu_count(),
        "torch_intra_op": torch.get_num_threads(),
        "torch_inter_op": torch.get_num_interop_threads(),
        "onnxruntime_intra_op": resolved_threads(ort.intra_op_threads),
        "onnxruntime_inter_op": ort.inter_op_threads,
        "onnxruntime_allow_spinning": ort.allow_spinning,
        "openvino_threads": resolved_threads(OpenVINOSettings().threads),
    }


class TorchThreads:
    """A torch-runtime model run with ``threads`` intra-op threads during each call (torch's
    thread count is process-wide: it is set for the call and put back after it)."""

    def __init__(self, model: Any, threads: int) -> None:
        self.model, self.threads = model, threads

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        before = torch.get_num_threads()
        if before == self.threads:
            return self.model(*args, **kwargs)
        torch.set_num_threads(self.threads)
        try:
            return self.model(*args, **kwargs)
        finally:
            torch.set_num_threads(before)

    def __getattr__(self, name: str) -> Any:  # precompile, manifest, ... of the wrapped model
        if name == "model":
            raise AttributeError(name)
        return getattr(self.model, name)


def apply_torch_settings(model: Any, settings: BaseModel | None) -> Any:
    if isinstance(settings, TorchSettings) and settings.threads is not None:
        return TorchThreads(model, settings.threads)
    return model


__all__ = [
    "OpenVINOSettings",
    "OrtSettings",
    "RuntimeSettings",
    "TorchSettings",
    "default_settings",
    "parse_settings",
    "settings_from_manifest",
    "thread_budget",
    "with_settings",
    "write_settings",
]
