"""``torchslim prune`` and ``torchslim distill``: one-candidate recipes (see ``_technique``),
measured side by side with the model they came from."""

from __future__ import annotations

from typing import Annotated

import typer

from torchslim.cli._common import BatchSizes, DataSpec, Device, ModelSpec, SeedOption, Weights


def register(app: typer.Typer) -> None:
    app.command("prune")(prune_cmd)
    app.command("distill")(distill_cmd)


def prune_cmd(
    model: ModelSpec = "digits-cnn",
    data: DataSpec = "digits",
    method: Annotated[str, typer.Option(help="magnitude (L1 per layer), global (L1 across layers) or channel (structured)")] = "channel",
    ratio: Annotated[float, typer.Option(help="fraction of weights/channels removed, in [0, 1)")] = 0.5,
    importance: Annotated[str, typer.Option(help="l1, l2, taylor or fisher (taylor, fisher: channel only; fisher also on embedding data)")] = "l1",
    scope: Annotated[str | None, typer.Option(help="channel only: uniform (same ratio per layer) or global")] = None,
    iterations: Annotated[int, typer.Option(help="prune -> fine-tune rounds toward the ratio")] = 1,
    finetune_epochs: Annotated[int, typer.Option(help="fine-tuning epochs after each round (distilled from the original)")] = 0,
    finetune_hidden_states: Annotated[bool, typer.Option(help="fine-tuning also matches every transformer layer's hidden states (hf: models)")] = False,
    ignore: Annotated[str, typer.Option(help="comma-separated module names never pruned")] = "",
    weights: Weights = None,
    out: Annotated[str | None, typer.Option(help="output directory (default runs/prune-<timestamp>)")] = None,
    device: Device = "auto",
    batch_sizes: BatchSizes = "1,32",
    seed: SeedOption = 0,
) -> int:
    """Prune a model; measure it against the original (report.json in --out).

    Unstructured pruning (magnitude, global) is followed by ``encode: huffman``: zeros only
    shrink a file that stores them sparsely (the .tslim keeps the nonzeros and Huffman-coded
    gaps and decodes to a dense model at load, so it runs at the original's speed).
    """
    from torchslim.cli._technique import run_one
    from torchslim.prune import parse_prune_config

    options = {"method": method, "ratio": ratio, "importance": importance, "iterations": iterations,
               "finetune_epochs": finetune_epochs, "finetune_hidden_states": finetune_hidden_states, "ignore": [n.strip() for n in ignore.split(",") if n.strip()]}
    if scope is not None:
        options["scope"] = scope
    parse_prune_config(options, where="prune options")  # bad options fail before any work
    steps: list[dict] = [{"prune": options}]
    if method in ("magnitude", "global"):
        steps.append({"encode": "huffman"})
    return run_one(f"prune-{method}", steps, model=model, data=data, weights=weights, out=out, device=device,
                   batch_sizes=batch_sizes, seed=seed)


def distill_cmd(
    teacher: Annotated[str, typer.Option(help="teacher MODEL spec (trained; zoo models are trained and cached)")] = "digits-cnn",
    model: Annotated[str | None, typer.Option(help="not on the CLI: a student of another architecture needs the Python API")] = None,
    width_multiplier: Annotated[float | None, typer.Option(help="student = the teacher's architecture at this width, in (0, 1]")] = None,
    data: DataSpec = "digits",
    epochs: Annotated[int, typer.Option()] = 5,
    temperature: Annotated[float, typer.Option(help="softmax temperature T (the KL term is scaled by T^2)")] = 4.0,
    alpha: Annotated[float, typer.Option(help="weight of the soft-target KL; 1 - alpha weighs the hard-label cross-entropy")] = 0.7,
    lr: Annotated[float | None, typer.Option(help="peak learning rate (default 1e-3; 3e-4 on embedding data)")] = None,
    hidden_states: Annotated[bool, typer.Option(help="also match every transformer layer's per-token hidden states (hf: models)")] = False,
    weights: Annotated[str | None, typer.Option(help="state_dict for a factory teacher")] = None,
    out: Annotated[str | None, typer.Option(help="output directory (default runs/distill-<timestamp>)")] = None,
    device: Device = "auto",
    batch_sizes: BatchSizes = "1,32",
    seed: SeedOption = 0,
) -> int:
    """Distill the teacher into a thinner copy of itself (channel pruning to ``--width-multiplier``,
    then knowledge distillation); measure it against the teacher (report.json in --out)."""
    from torchslim.cli._technique import run_one
    from torchslim.distill import parse_distill_config
    from torchslim.errors import ConfigError

    options = {"epochs": epochs, "temperature": temperature, "alpha": alpha, "seed": seed, "hidden_states": hidden_states}
    if lr is not None:
        options["lr"] = lr
    parse_distill_config(options)  # bad options fail before any work
    if model is not None:
        raise ConfigError("distill --model: on the command line the student is the teacher's own architecture at "
                          "--width-multiplier; for a student of another architecture call torchslim.distill(student, "
                          "teacher, data, DistillConfig(...)) from Python.")
    if width_multiplier is None or not 0.0 < width_multiplier < 1.0:
        raise ConfigError("distill: give --width-multiplier in (0, 1): the student is the teacher's architecture at "
                          "that width (its channels, hidden units and attention heads chosen by channel pruning), "
                          "taught by the teacher.")
    steps = [{"prune": {"method": "channel", "ratio": round(1.0 - width_multiplier, 6)}}, {"distill": options}]
    return run_one(f"distill-width-{width_multiplier:g}", steps, model=teacher, data=data, weights=weights, out=out,
                   device=device, batch_sizes=batch_sizes, seed=seed)


