from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict

from torchslim.bench._counting import count_macs, count_params
from torchslim.bench._memory import probe_artifact
from torchslim.bench._timing import time_callable
from torchslim.bench._workload import Workload, sentence_workload
from torchslim.core.manifest import artifact_size
from torchslim.core.padding import SkipPadding
from torchslim.data import DataBundle, scorer


class Latency(BaseModel):
    model_config = ConfigDict(extra="forbid")
    p50: float
    p95: float
    cv: float


class Metrics(BaseModel):
    """SPEC.md section 5 ``metrics``. Every number here was measured, none estimated."""

    model_config = ConfigDict(extra="forbid")
    accuracy: float  # on the held-out split; fidelity (mean cosine) for embedding tasks
    size_bytes: int  # the artifact's bytes on disk (all its files: an OpenVINO IR's .xml + .bin)
    params: int
    macs: int | None
    latency_ms: dict[str, Latency]  # keyed by batch size
    throughput_per_s: float  # samples/s at the largest batch size measured
    peak_memory_bytes: int
    runtime: str
    cold_start_ms: float | None = None  # load the artifact + its first call (fresh process on CPU)
    workload: Workload | None = None  # tokenized text: the held-out sentences as a service sends them


def set_threads(threads: int | None = None) -> int:
    """Fix intra-op threads (default: all cores) so every variant is timed alike; returns it."""
    threads = threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    return threads


def measure(
    fn: Callable,
    data: DataBundle,
    *,
    artifact: str | Path,
    runtime: str,
    batch_sizes: Sequence[int] = (1, 32),
    device: str | torch.device = "cpu",
    reference: torch.Tensor | Callable | None = None,
    params: int | None = None,
    macs: int | None = None,
    example_inputs: Callable[[int], tuple] | None = None,
    progress: Callable[[str], None] | None = None,
    target_s: float = 1.0,
    known_accuracy: float | None = None,
) -> Metrics:
    """Measure ``fn`` (loaded from ``artifact`` on ``runtime``) on ``data.test``.

    ``reference`` (outputs or a callable) is required for embedding tasks (fidelity).
    ``params``/``macs`` default to counting ``fn`` when it is an ``nn.Module``.
    ``example_inputs(batch_size)`` defaults to real test samples. ``known_accuracy``: the metric
    already measured on ``data.test`` from this very artifact (a build on another node did it,
    pipeline._ray), so the serial timing queue does not spend time on it again.
    """
    say = progress or (lambda _msg: None)
    artifact = Path(artifact)
    device = torch.device(device)
    make_inputs = example_inputs or (lambda b: tuple(t.to(device) for t in data.example_inputs(b)))
    say("accuracy")
    score = known_accuracy if known_accuracy is not None else _score(fn, data, reference, device)
    module = fn.model if isinstance(fn, SkipPadding) else fn  # count the model, not the padding wrapper
    if params is None:
        params = _count_artifact_params(module, artifact)
    if macs is None and isinstance(module, torch.nn.Module):
        macs = count_macs(module, make_inputs(1))
    latency = _latencies(fn, make_inputs, batch_sizes, device, target_s, say)
    largest = max(batch_sizes)
    throughput = largest / (latency[str(largest)].p50 / 1e3)
    workload = None
    if data.task == "embedding" or _is_text(data):
        say("sentence workload")
        workload = sentence_workload(fn, data.test, device=device)
    say("peak memory and cold start")
    probe = probe_artifact(artifact, largest, runtime=runtime, device=device)
    return Metrics(
        accuracy=score,
        size_bytes=artifact_size(artifact),
        params=int(params),
        macs=macs,
        latency_ms=latency,
        throughput_per_s=throughput,
        peak_memory_bytes=probe.peak_bytes,
        runtime=runtime,
        cold_start_ms=round(probe.cold_start_ms, 3),
        workload=workload,
    )


def _score(fn: Callable, data: DataBundle, reference, device: torch.device) -> float:
    with torch.no_grad():
        return scorer(data.task, data.test, reference, device=device)(fn)


def _latencies(fn: Callable, make_inputs, batch_sizes: Sequence[int], device: torch.device, target_s: float,
               say: Callable[[str], None]) -> dict[str, Latency]:
    latency = {}
    for b in batch_sizes:
        say(f"latency at batch {b}")
        inputs = make_inputs(b)
        with torch.no_grad():
            stats = time_callable(lambda inputs=inputs: fn(*inputs), cuda=device.type == "cuda", target_s=target_s)
        latency[str(b)] = Latency(**stats.to_dict())
    return latency


def _is_text(data: DataBundle) -> bool:
    return hasattr(data.test, "attention_mask")


def _count_artifact_params(fn: Callable, artifact: Path) -> int:
    """Parameters of what was loaded: the module's, or an ONNX file's weight initializers.
    Compiled packages (AOTInductor, TensorRT) hide their weights: 0 unless the caller counts
    the model they came from and passes ``params``."""
    if isinstance(fn, torch.nn.Module):
        return count_params(fn)
    if artifact.suffix == ".onnx":
        from torchslim.export import onnx_param_count

        return onnx_param_count(artifact)
    return 0
