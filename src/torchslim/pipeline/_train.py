"""``train_from_specs``: what ``torchslim train`` does, as a library call.

Builds a fresh model from a MODEL spec (zoo name or factory; never the cached trained zoo
weights: this trains from scratch unless ``weights`` are given to start from), trains it with
``fit`` and, on rank 0, saves ``model.pt2`` (a torch.export artifact with manifest) and
``model.safetensors`` (the state_dict) in ``out_dir``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from torchslim.core.rundir import RunKind, claim_run_dir
from torchslim.errors import TrainingError
from torchslim.pipeline._resume import interrupted
from torchslim.train import FitResult, TrainConfig

TRAIN_RUN = RunKind("train", results=("checkpoint.pt", "model.pt2"), entries=frozenset(
    {"checkpoint.pt", "model.pt2", "model.pt2.json", "model.safetensors", "best.safetensors", "metrics.jsonl",
     "tensorboard"}))


@dataclass
class TrainRun:
    model: nn.Module
    result: FitResult
    out_dir: Path
    artifact: Path | None  # model.pt2 (rank 0 only)
    weights: Path | None  # model.safetensors (rank 0 only)
    test_accuracy: float | None


def train_from_specs(
    model_spec: str,
    data_spec: str,
    config: TrainConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    device: str | torch.device = "auto",
    weights: str | Path | None = None,
    log: Callable[[str], None] | None = None,
    progress: bool = False,
) -> TrainRun:
    from torchslim.train import launched_by_torchrun

    out_dir = Path(out_dir)
    if model_spec.strip().startswith("hf:"):
        raise TrainingError(f"MODEL {model_spec!r}: Hugging Face models are used as given (embedding task); torchslim train trains classifiers from a zoo name or a factory.")
    is_main = not launched_by_torchrun() or int(os.environ.get("RANK", "0")) == 0
    run = claim_run_dir(out_dir, TRAIN_RUN, resume=resume) if is_main else None  # rank 0 speaks for the run
    try:
        trained = _train(model_spec, data_spec, config, out_dir, resume=resume, device=device, weights=weights,
                         log=log, progress=progress, is_main=is_main)
    except BaseException as e:
        if run is not None:
            if isinstance(e, KeyboardInterrupt) and run.has_result():
                interrupted(f"interrupted: the last checkpoint is in {out_dir}; continue with --out {out_dir} --resume")
            run.abandon()  # before the first checkpoint: leave --out as it was found
        raise
    if run is not None:
        run.release()
    return trained


def _train(model_spec, data_spec, config, out_dir: Path, *, resume, device, weights, log, progress, is_main) -> TrainRun:
    from torchslim.data import load_data
    from torchslim.specs import build_model
    from torchslim.train import evaluate, fit

    data = load_data(data_spec, seed=config.seed)
    torch.manual_seed(config.seed)  # the model's initial weights depend on the seed alone
    model = build_model(model_spec, data)
    if weights is not None:
        from torchslim.specs import load_weights

        load_weights(model, weights)
    result = fit(model, data, config, device=device, log=log, out_dir=out_dir, resume=resume, progress=progress)

    if not is_main:
        return TrainRun(model, result, out_dir, None, None, None)
    from safetensors.torch import save_file

    from torchslim.artifacts import save_exported
    from torchslim.core.files import atomic_write

    model = model.cpu().eval()
    test_accuracy = evaluate(model, data.test, device=torch.device("cpu"))
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    weights_path = atomic_write(out_dir / "model.safetensors", lambda p: save_file(state, str(p)))
    artifact = save_exported(model, out_dir / "model.pt2", data.example_inputs(2), steps=[f"train(model={model_spec}, epochs={result.epochs_run})"],
                             extra={"best_val_accuracy": result.best_val_accuracy, "test_accuracy": test_accuracy})
    return TrainRun(model, result, out_dir, artifact, weights_path, test_accuracy)
