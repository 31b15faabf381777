"""``torchslim quantize``: one quantization method as a one-candidate recipe (see ``_technique``)."""

from __future__ import annotations

from typing import Annotated

import typer

from torchslim.cli._common import BatchSizes, Device, ModelSpec, SeedOption, Weights


def register(app: typer.Typer) -> None:
    app.command("quantize")(quantize_cmd)


def quantize_cmd(
    model: ModelSpec = "digits-cnn",
    data: Annotated[str, typer.Option(help="DATA spec (train split calibrates; test split measures)")] = "digits",
    method: Annotated[str, typer.Option(help="dynamic, static, qat, weight-only, int4, bf16 or fp16")] = "static",
    calibration_batches: Annotated[int | None, typer.Option(help="train batches observed (static, qat)")] = None,
    skip: Annotated[str | None, typer.Option(help="comma-separated module or class names left in float")] = None,
    epochs: Annotated[int | None, typer.Option(help="fine-tuning epochs (qat)")] = None,
    lr: Annotated[float | None, typer.Option(help="fine-tuning learning rate (qat)")] = None,
    out: Annotated[str | None, typer.Option(help="run directory (default runs/quantize-<method>-<timestamp>)")] = None,
    runtime: Annotated[str | None, typer.Option(help="eager or compile (default: where the method is fast)")] = None,
    weights: Weights = None,
    batch_sizes: BatchSizes = "1,32",
    device: Device = "auto",
    seed: SeedOption = 0,
) -> int:
    """Quantize a model with one method; measure it against fp32 (report.json in --out)."""
    from torchslim.cli._technique import run_one
    from torchslim.errors import ConfigError
    from torchslim.quantize import parse_config

    options: dict = {"method": method}
    for key, value in (("calibration_batches", calibration_batches), ("epochs", epochs), ("lr", lr)):
        if value is not None:
            options[key] = value
    if skip:
        options["skip"] = skip
    parse_config(options, "--method options")  # bad options fail before any work
    if runtime is not None and runtime not in ("eager", "compile"):
        raise ConfigError(f"--runtime {runtime!r}: quantized .pt2 artifacts run on 'eager' or 'compile'.")
    return run_one(f"quantize-{method}", [{"quantize": options}], model=model, data=data, weights=weights, out=out,
                   device=device, batch_sizes=batch_sizes, seed=seed, runtime=runtime)
