"""``torchslim.benchmark``: measure a MODEL spec, an ``nn.Module`` or a saved artifact."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import torch.nn as nn

from torchslim.bench._measure import Metrics, measure, set_threads
from torchslim.errors import ConfigError


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
    from torchslim.artifacts import load, read_manifest
    from torchslim.data import load_data
    from torchslim.device import resolve_device
    from torchslim.specs import resolve

    dev = resolve_device(device)
    set_threads()
    say = progress or (lambda _m: None)
    path = Path(model) if isinstance(model, (str, Path)) else None
    if path is not None and path.is_file():
        manifest = read_manifest(path)
        run_on = runtime or manifest.runtime
        bundle = load_data(data, seed=seed)
        fn = load(path, runtime=run_on, device=dev)
        reference = None
        if bundle.task == "embedding":
            raise ConfigError("Benchmarking a saved embedding artifact needs the original model for fidelity; "
                              "benchmark the hf: spec instead.")
        return measure(fn, bundle, artifact=path, runtime=run_on, batch_sizes=batch_sizes, device=dev,
                       reference=reference, progress=say)
    input_names = None
    if isinstance(model, nn.Module):
        bundle = load_data(data, seed=seed)
        module = model.to(dev).eval()
    else:
        if isinstance(model, Path) or str(model).endswith((".pt2", ".onnx", ".tslim", ".engine", ".xml")):
            from torchslim.errors import ArtifactError

            raise ArtifactError(f"Artifact {str(model)!r} does not exist.")
        handle, bundle = resolve(str(model), data, weights=weights, device=dev, seed=seed, log=say)
        module = handle.model
        input_names = getattr(handle.hf, "input_names", None)
    run_on = runtime or "eager"
    example = tuple(t.to(dev) for t in bundle.example_inputs(2))
    with tempfile.TemporaryDirectory(prefix="torchslim-bench-") as tmp:
        artifact = _save_for_runtime(module, Path(tmp), example, run_on, bundle.task, input_names)
        fn = load(artifact, runtime=run_on, device=dev)
        reference = module if bundle.task == "embedding" else None
        from torchslim.bench._counting import count_macs, count_params

        return measure(fn, bundle, artifact=artifact, runtime=run_on, batch_sizes=batch_sizes, device=dev,
                       reference=reference, params=count_params(module), macs=count_macs(module, tuple(t[:1] for t in example)),
                       progress=say)


def _save_for_runtime(module: nn.Module, folder: Path, example: tuple, runtime: str, task: str,
                      input_names: list[str] | None = None) -> Path:
    from torchslim.artifacts import save_exported

    if runtime in ("eager", "compile"):
        return save_exported(module, folder / "model.pt2", example, runtime=runtime, task=task, input_names=input_names)
    try:
        from torchslim.export import export
    except ImportError:
        raise ConfigError(f"Runtime {runtime!r} is not available in this version of torchslim.") from None
    return export(module, folder, example, runtime=runtime, task=task, input_names=input_names)
