"""``torchslim.benchmark``: measure a MODEL spec, an ``nn.Module`` or a saved artifact."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import torch.nn as nn

from torchslim.artifacts import load, read_manifest, save_for_runtime
from torchslim.bench._counting import count_macs, count_params
from torchslim.bench._measure import Metrics, measure, set_threads
from torchslim.core.device import resolve_device
from torchslim.core.model_check import check_classifier
from torchslim.data import load_data
from torchslim.errors import ArtifactError, ConfigError, SpecError
from torchslim.specs import resolve


def benchmark(
    model: str | Path | nn.Module,
    data: str = "digits",
    *,
    batch_sizes: Sequence[int] = (1, 32),
    runtime: str | None = None,
    device: str = "auto",
    weights: str | None = None,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> Metrics:
    """Accuracy, size, params, MACs, latency, throughput and peak memory of ``model``.

    ``model`` is a MODEL spec, a module, or the path of an artifact torchslim wrote; a spec or
    module is first saved as an artifact for ``runtime`` (size on disk is always real bytes).
    """
    if not isinstance(model, (str, Path, nn.Module)):
        raise SpecError(f"model must be a MODEL spec, an artifact path or an nn.Module, got {type(model).__name__}.")
    if not isinstance(data, str):
        raise SpecError(f"data must be a DATA spec string (e.g. 'digits', 'npz:FILE'), got {type(data).__name__} {data!r}.")
    dev = resolve_device(device)
    set_threads()
    say = progress or (lambda _m: None)
    path = Path(model) if isinstance(model, (str, Path)) else None
    if path is not None and path.is_file():
        return _benchmark_artifact(path, data, batch_sizes=batch_sizes, runtime=runtime, device=dev, seed=seed, say=say)
    module, bundle, input_names = _module_and_data(model, data, weights=weights, device=dev, seed=seed, say=say)
    run_on = runtime or "eager"
    example = tuple(t.to(dev) for t in bundle.example_inputs(2))
    with tempfile.TemporaryDirectory(prefix="torchslim-bench-") as tmp:
        artifact = save_for_runtime(module, Path(tmp), example, run_on, task=bundle.task, input_names=input_names)
        fn = load(artifact, runtime=run_on, device=dev)
        reference = module if bundle.task == "embedding" else None
        return measure(fn, bundle, artifact=artifact, runtime=run_on, batch_sizes=batch_sizes, device=dev,
                       reference=reference, params=count_params(module), macs=count_macs(module, tuple(t[:1] for t in example)),
                       progress=say)


def _benchmark_artifact(path: Path, data: str, *, batch_sizes, runtime, device, seed, say) -> Metrics:
    manifest = read_manifest(path)
    run_on = runtime or manifest.runtime
    bundle = load_data(data, seed=seed)
    check_artifact_fits_data(path, manifest, bundle)
    fn = load(path, runtime=run_on, device=device)
    if bundle.task == "embedding":
        raise ConfigError("Benchmarking a saved embedding artifact needs the original model for fidelity; "
                          "benchmark the hf: spec instead.")
    return measure(fn, bundle, artifact=path, runtime=run_on, batch_sizes=batch_sizes, device=device, progress=say)


def _module_and_data(model, data: str, *, weights, device, seed, say):
    """(module, bundle, input names) for a module or a MODEL spec string."""
    if isinstance(model, nn.Module):
        bundle = load_data(data, seed=seed)
        module = model.to(device).eval()
        if bundle.task == "classification":
            check_classifier(module, tuple(t.to(device) for t in bundle.example_inputs(2)), num_classes=bundle.num_classes)
        return module, bundle, None
    if isinstance(model, Path) or str(model).endswith((".pt2", ".onnx", ".tslim", ".engine", ".xml")):
        raise ArtifactError(f"Artifact {str(model)!r} does not exist.")
    handle, bundle = resolve(str(model), data, weights=weights, device=device, seed=seed, log=say)
    return handle.model, bundle, getattr(handle.hf, "input_names", None)


def check_artifact_fits_data(path: Path, manifest, bundle) -> None:
    """An artifact measured on data of another shape fails as bad input here, not after seconds of
    timing as a shape guard deep inside a runtime."""
    if len(manifest.inputs) != 1 or bundle.input_shape is None:
        return  # token models: per-input shapes vary by design
    takes, gives = list(manifest.inputs[0].shape[1:]), list(bundle.input_shape)
    if takes != gives:
        raise ArtifactError(
            f"Artifact {str(path)!r} takes inputs shaped [batch, {', '.join(map(str, takes))}] (its manifest says so) "
            f"but data {bundle.spec!r} gives samples shaped {gives}. Benchmark it on the data it was built for; "
            "if the manifest was edited, restore it."
        )
