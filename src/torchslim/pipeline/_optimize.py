from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import torch

import torchslim
from torchslim._log import log_to_file, say
from torchslim.artifacts import load, save_exported
from torchslim.bench import measure, set_threads
from torchslim.device import resolve_device
from torchslim.errors import ConfigError
from torchslim.report import Candidate, Report, environment, write_report
from torchslim.specs import resolve


def new_run_dir(root: str | Path = "runs") -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(root) / stamp
    n = 1
    while path.exists():
        path = Path(root) / f"{stamp}-{n}"
        n += 1
    return path


def optimize(
    model: str = "digits-cnn",
    data: str = "digits",
    *,
    weights: str | None = None,
    max_accuracy_drop: float = 1.0,
    device: str = "auto",
    out: str | Path | None = None,
    seed: int = 0,
    batch_sizes: Sequence[int] = (1, 32),
) -> Report:
    """Measure the baseline and write ``report.json``. (The candidate search is not built yet.)"""
    if max_accuracy_drop < 0:
        raise ConfigError(f"--max-accuracy-drop must be >= 0 percentage points, got {max_accuracy_drop}.")
    run_dir = Path(out) if out else new_run_dir()
    if (run_dir / "report.json").exists():
        raise ConfigError(f"{str(run_dir)!r} already holds a run. Choose a new --out directory.")
    run_dir.mkdir(parents=True, exist_ok=True)
    log_to_file(run_dir / "run.log")
    dev = resolve_device(device)
    set_threads()
    torch.manual_seed(seed)
    handle, bundle = resolve(model, data, weights=weights, device=dev, seed=seed, log=say)
    example = tuple(t.to(dev) for t in bundle.example_inputs(2))
    say("saving the baseline artifact")
    artifact = save_exported(handle.model, run_dir / "baseline.pt2", example, task=bundle.task)
    say("measuring the baseline")
    fn = load(artifact, device=dev)
    reference = handle.model if bundle.task == "embedding" else None
    metrics = measure(fn, bundle, artifact=artifact, runtime="eager", batch_sizes=batch_sizes, device=dev,
                      reference=reference, macs=None, progress=say)
    baseline = Candidate(name="baseline", steps=[], status="ok", within_budget=True,
                         artifact=artifact.name, metrics=metrics)
    report = Report(
        torchslim_version=torchslim.__version__,
        environment=environment(dev),
        model=model,
        data=data,
        task=bundle.task,
        metric=bundle.metric,
        budget={"max_accuracy_drop": max_accuracy_drop},
        baseline=baseline,
        candidates=[],
        best=None,
    )
    write_report(report, run_dir)
    report._run_dir = str(run_dir)
    return report
