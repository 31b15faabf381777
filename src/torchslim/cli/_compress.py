"""``torchslim factorize`` and ``torchslim share``: one-candidate recipes (see ``_technique``)."""

from __future__ import annotations

from typing import Annotated

import typer

from torchslim.cli._common import BatchSizes, DataSpec, Device, ModelSpec, SeedOption, Weights


def register(app: typer.Typer) -> None:
    app.command("factorize")(factorize_cmd)
    app.command("share")(share_cmd)


def factorize_cmd(
    model: ModelSpec = "digits-mlp",
    data: DataSpec = "digits",
    rank_ratio: Annotated[float | None, typer.Option(help="kept rank / full rank, in (0, 1]")] = None,
    energy: Annotated[float | None, typer.Option(help="kept share of squared singular values, in (0, 1]")] = None,
    finetune_epochs: Annotated[int, typer.Option(help="fine-tuning epochs after factorizing")] = 0,
    min_saving: Annotated[float, typer.Option(help="skip layers saving less than this share of MACs")] = 0.1,
    weights: Weights = None,
    out: Annotated[str | None, typer.Option(help="output directory (default runs/<timestamp>)")] = None,
    device: Device = "auto",
    seed: SeedOption = 0,
    batch_sizes: BatchSizes = "1,32",
) -> int:
    """Low-rank factorization (truncated SVD) of Linear/Conv layers; measured against the original."""
    from torchslim.cli._technique import run_one
    from torchslim.factorize import validate_config

    options = {"finetune_epochs": finetune_epochs, "min_saving": min_saving, "seed": seed}
    options.update({k: v for k, v in (("rank_ratio", rank_ratio), ("energy", energy)) if v is not None})
    validate_config(options, "factorize options")  # bad values fail before any work
    return run_one("factorize", [{"factorize": options}], model=model, data=data, weights=weights, out=out,
                   device=device, batch_sizes=batch_sizes, seed=seed)


def share_cmd(
    model: ModelSpec = "lenet-300-100",
    data: DataSpec = "digits",
    bits: Annotated[int, typer.Option(help="2^bits shared values per layer (1-8)")] = 5,
    prune_ratio: Annotated[float, typer.Option(help="magnitude-prune this share of each layer first, in [0, 1)")] = 0.0,
    prune_steps: Annotated[int, typer.Option(help="prune in this many steps")] = 1,
    finetune_epochs: Annotated[int, typer.Option(help="fine-tuning epochs after each pruning step")] = 0,
    centroid_epochs: Annotated[int, typer.Option(help="epochs of centroid fine-tuning after sharing")] = 0,
    weights: Weights = None,
    out: Annotated[str | None, typer.Option(help="output directory (default runs/<timestamp>)")] = None,
    device: Device = "auto",
    seed: SeedOption = 0,
    batch_sizes: BatchSizes = "1,32",
) -> int:
    """Deep compression: [magnitude prune ->] weight sharing -> Huffman coding into a .tslim file,
    measured against the original (report.json in --out). ``benchmarks/deep_compression.py``
    measures every stage on disk."""
    from torchslim.cli._technique import run_one
    from torchslim.errors import ConfigError
    from torchslim.share import validate_step

    share_options = {"bits": bits, "finetune_epochs": centroid_epochs}
    validate_step(share_options)
    if not 0 <= prune_ratio < 1:
        raise ConfigError(f"--prune-ratio must be in [0, 1) (the share of each layer's weights set to zero), got {prune_ratio}.")
    if prune_steps < 1 or finetune_epochs < 0:
        raise ConfigError("--prune-steps must be >= 1 and --finetune-epochs >= 0.")
    steps: list[dict] = []
    if prune_ratio > 0:
        steps.append({"prune": {"method": "magnitude", "ratio": prune_ratio, "iterations": prune_steps,
                                "finetune_epochs": finetune_epochs}})
    steps += [{"share": share_options}, {"encode": "huffman"}]
    return run_one(f"share-{bits}bit", steps, model=model, data=data, weights=weights, out=out, device=device,
                   batch_sizes=batch_sizes, seed=seed)
