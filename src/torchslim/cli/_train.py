"""``torchslim train``: train a model with the training engine (DDP under torchrun)."""

from __future__ import annotations

import re
from typing import Annotated

import typer

from torchslim.cli._common import MAX_SEED, DataSpec, Device, ModelSpec


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)


def train_cmd(
    model: ModelSpec = "digits-cnn",
    data: DataSpec = "digits",
    config: Annotated[str | None, typer.Option(help="YAML file of TrainConfig fields (see docs/training.md)")] = None,
    epochs: Annotated[int | None, typer.Option(help="override the config's epochs")] = None,
    batch_size: Annotated[int | None, typer.Option(help="override the config's batch_size (per process)")] = None,
    lr: Annotated[float | None, typer.Option(help="override the config's lr")] = None,
    precision: Annotated[str | None, typer.Option(help="override the config's precision: fp32, bf16, fp16")] = None,
    seed: Annotated[int | None, typer.Option(min=0, max=MAX_SEED, help="override the config's seed")] = None,
    out: Annotated[str | None, typer.Option(help="run directory (default runs/train-<model>-<data>)")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue from the checkpoint in --out")] = False,
    weights: Annotated[str | None, typer.Option(help="state_dict to start from (.pt or .safetensors)")] = None,
    device: Device = "auto",
) -> None:
    """Train a model: mixed precision, accumulation, clipping, schedules, checkpoints, DDP.

    Saves model.pt2 (artifact), model.safetensors, checkpoint.pt, best.safetensors and
    metrics.jsonl in --out. Multi-process: torchrun --nproc_per_node=K -m torchslim train ...
    """
    import os
    import sys
    from pathlib import Path

    from torchslim.core.log import say
    from torchslim.pipeline import train_from_specs
    from torchslim.train import launched_by_torchrun, load_train_config

    train_config = load_train_config(config, epochs=epochs, batch_size=batch_size, lr=lr, precision=precision, seed=seed)
    out_dir = Path(out) if out else Path("runs") / re.sub(r"[^A-Za-z0-9_.-]+", "_", f"train-{model}-{data}")
    is_main = not launched_by_torchrun() or os.environ.get("RANK", "0") == "0"
    run = train_from_specs(model, data, train_config, out_dir, resume=resume, device=device, weights=weights,
                           log=say if is_main else None, progress=sys.stderr.isatty())
    if not is_main:
        return
    r = run.result
    typer.echo(f"trained {model} on {data}: {r.epochs_run} epochs, {r.steps} steps, best val accuracy "
               f"{r.best_val_accuracy:.2%}, test accuracy {run.test_accuracy:.2%}"
               + (" (stopped early)" if r.stopped_early else ""))
    typer.echo(f"artifact: {run.artifact}\nweights: {run.weights}\ncheckpoint: {r.checkpoint}\nmetrics: {out_dir / 'metrics.jsonl'}")
