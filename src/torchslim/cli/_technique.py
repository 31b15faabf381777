"""Every single-technique verb is a one-candidate recipe run through ``optimize``.

``torchslim quantize|prune|distill|factorize|share`` parse their own options into step
options, then go through the same pipeline as ``torchslim optimize``: the same baseline,
artifact, measurement, table, atomic ``report.json`` (and ``report.html``) in ``--out``, and
the same exit codes. ``torchslim apply STEP -o key=value`` does the same for any registered
step, including a plug-in's.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from torchslim import errors
from torchslim.cli._common import (
    BatchSizes,
    DataSpec,
    Device,
    ModelSpec,
    SeedOption,
    Weights,
    parse_batch_sizes,
)
from torchslim.errors import ConfigError


def run_one(verb: str, steps: list[dict[str, Any]], *, model: str, data: str, weights: str | None,
            out: str | None, device: str, batch_sizes: str, seed: int, runtime: str | None = None,
            max_accuracy_drop: float = 1.0) -> int:
    """Run ``steps`` as the one candidate of a recipe; returns the exit code."""
    from torchslim.pipeline import Goal, MeasureOptions, RunOptions, optimize
    from torchslim.report import render_table

    candidate: dict[str, Any] = {"name": verb, "steps": steps}
    if runtime is not None:
        candidate["runtime"] = runtime
    recipe = {"description": f"torchslim {verb}: one technique, measured against the original",
              "candidates": [candidate]}
    out_dir = out or str(Path("runs") / f"{verb}-{datetime.now().strftime('%Y%m%d-%H%M%S')}")
    report = optimize(model, data, recipe, goal=Goal(max_accuracy_drop=max_accuracy_drop),
                      run=RunOptions(out=out_dir, weights=weights, device=device, seed=seed),
                      measure=MeasureOptions(batch_sizes=parse_batch_sizes(batch_sizes)))
    render_table(report)
    typer.echo(f"report: {report.run_dir}/report.json, {report.run_dir}/report.html")
    result = report.candidates[0]
    if result.status != "ok":
        # The candidate's error names its exception type: a TorchslimError is the input's fault.
        kind = (result.error or "").split(":", 1)[0]
        user_error = isinstance(getattr(errors, kind, None), type) and issubclass(getattr(errors, kind), errors.TorchslimError)
        typer.echo(f"error: {verb} failed: {result.error}", err=True)
        return 2 if user_error else 1
    typer.echo(f"artifact: {Path(report.run_dir) / result.artifact}")
    return 0


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; values are read as YAML (numbers, booleans, lists)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--option {pair!r}: write key=value, e.g. --option ratio=0.5.")
        try:
            options[key.strip()] = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError:
            options[key.strip()] = value
    return options


def register(app: typer.Typer) -> None:
    app.command("apply")(apply_cmd)


def apply_cmd(
    step: Annotated[str, typer.Argument(help="a registered recipe step (torchslim recipes lists the built-in ones)")],
    option: Annotated[list[str] | None, typer.Option("--option", "-o", help="a step option as key=value (repeat)")] = None,
    model: ModelSpec = "digits-cnn",
    data: DataSpec = "digits",
    weights: Weights = None,
    runtime: Annotated[str | None, typer.Option(help="measure on this runtime (default: what the step says)")] = None,
    out: Annotated[str | None, typer.Option(help="run directory (default runs/<step>-<timestamp>)")] = None,
    device: Device = "auto",
    batch_sizes: BatchSizes = "1,32",
    seed: SeedOption = 0,
) -> int:
    """Apply any one recipe step (a built-in or a plug-in's) and measure it against the original."""
    return run_one(step, [{step: parse_options(option or [])}], model=model, data=data, weights=weights, out=out,
                   device=device, batch_sizes=batch_sizes, seed=seed, runtime=runtime)
