"""``torchslim factorize`` and ``torchslim share``: one technique, one artifact, measured."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from torchslim.cli._common import parse_batch_sizes


def register(app: typer.Typer) -> None:
    app.command("factorize")(factorize_cmd)
    app.command("share")(share_cmd)


def _metrics_table(title: str, rows: dict):
    from rich.table import Table

    table = Table(title=title)
    table.add_column("")
    for name in rows:
        table.add_column(name, justify="right")
    first = next(iter(rows.values()))

    def line(label, fmt):
        table.add_row(label, *(fmt(m) for m in rows.values()))

    line("accuracy", lambda m: f"{m.accuracy * 100:.2f} %")
    line("size on disk", lambda m: f"{m.size_bytes:,} B")
    line("params", lambda m: f"{m.params:,}")
    line("MACs", lambda m: f"{m.macs:,}" if m.macs is not None else "n/a")
    for b in first.latency_ms:
        line(f"latency p50 b={b}", lambda m, b=b: f"{m.latency_ms[b].p50:.3f} ms")
    line("runtime", lambda m: m.runtime)
    return table


def _measure(module, artifact: Path, runtime: str, bundle, dev, batch_sizes):
    from torchslim.artifacts import load
    from torchslim.bench import count_macs, count_params, measure

    fn = load(artifact, device=dev)
    one = tuple(t.to(dev) for t in bundle.example_inputs(1))
    return measure(fn, bundle, artifact=artifact, runtime=runtime, batch_sizes=batch_sizes, device=dev,
                   params=count_params(module), macs=count_macs(module, one))


def _prepare(model, data, weights, device, seed, out):
    from torchslim._log import say
    from torchslim.bench import set_threads
    from torchslim.device import resolve_device
    from torchslim.pipeline._optimize import new_run_dir
    from torchslim.specs import resolve

    dev = resolve_device(device)
    set_threads()
    handle, bundle = resolve(model, data, weights=weights, device=dev, seed=seed, log=say)
    out_dir = Path(out) if out else new_run_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    return dev, handle, bundle, out_dir


def factorize_cmd(
    model: Annotated[str, typer.Option(help="MODEL spec")] = "digits-mlp",
    data: Annotated[str, typer.Option(help="DATA spec")] = "digits",
    rank_ratio: Annotated[float | None, typer.Option(help="kept rank / full rank, in (0, 1]")] = None,
    energy: Annotated[float | None, typer.Option(help="kept share of squared singular values, in (0, 1]")] = None,
    finetune_epochs: Annotated[int, typer.Option(help="fine-tuning epochs after factorizing")] = 0,
    min_saving: Annotated[float, typer.Option(help="skip layers saving less than this share of MACs")] = 0.1,
    weights: Annotated[str | None, typer.Option(help="state_dict for a factory model")] = None,
    out: Annotated[str | None, typer.Option(help="output directory (default runs/<timestamp>)")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
    seed: Annotated[int, typer.Option()] = 0,
    batch_sizes: Annotated[str, typer.Option(help="batch sizes to time")] = "1,32",
) -> None:
    """Low-rank factorization (truncated SVD) of Linear/Conv layers; writes factorized.pt2."""
    from rich.console import Console

    from torchslim._log import say
    from torchslim.artifacts import save_exported
    from torchslim.factorize import factorize, plan, validate_config

    options = {"finetune_epochs": finetune_epochs, "min_saving": min_saving, "seed": seed}
    options.update({k: v for k, v in (("rank_ratio", rank_ratio), ("energy", energy)) if v is not None})
    config = validate_config(options, "factorize options")  # bad values fail before any work
    sizes = parse_batch_sizes(batch_sizes)
    dev, handle, bundle, out_dir = _prepare(model, data, weights, device, seed, out)
    layers = plan(handle.model, config)
    result = factorize(handle.model, config, data=bundle, device=dev, log=say)
    example = tuple(t.to(dev) for t in bundle.example_inputs(2))
    step = f"factorize({config.rule}, finetune_epochs={config.finetune_epochs})"
    base = save_exported(handle.model, out_dir / "original.pt2", example, task=bundle.task)
    art = save_exported(result, out_dir / "factorized.pt2", example, task=bundle.task, steps=[step])
    say("measuring the original and the factorized model")
    metrics = {"original": _measure(handle.model, base, "eager", bundle, dev, sizes),
               "factorized": _measure(result, art, "eager", bundle, dev, sizes)}
    console = Console()
    console.print(_metrics_table(f"{model}: {step}", metrics))
    chosen = [p for p in layers if p.factorized]
    console.print(f"{len(chosen)}/{len(layers)} layers factorized; artifact {art}")
    summary = {"step": step, "layers": [p.to_dict() for p in layers],
               "metrics": {k: m.model_dump() for k, m in metrics.items()}}
    (out_dir / "factorize.json").write_text(json.dumps(summary, indent=2))


def share_cmd(
    model: Annotated[str, typer.Option(help="MODEL spec")] = "lenet-300-100",
    data: Annotated[str, typer.Option(help="DATA spec")] = "digits",
    bits: Annotated[int, typer.Option(help="2^bits shared values per layer (1-8)")] = 5,
    prune_ratio: Annotated[float, typer.Option(help="magnitude-prune this share of each layer first, in [0, 1)")] = 0.0,
    prune_steps: Annotated[int, typer.Option(help="prune in this many steps")] = 1,
    finetune_epochs: Annotated[int, typer.Option(help="fine-tuning epochs after each pruning step")] = 0,
    centroid_epochs: Annotated[int, typer.Option(help="epochs of centroid fine-tuning after sharing")] = 0,
    weights: Annotated[str | None, typer.Option(help="state_dict for a factory model")] = None,
    out: Annotated[str | None, typer.Option(help="output directory (default runs/<timestamp>)")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
    seed: Annotated[int, typer.Option()] = 0,
    batch_sizes: Annotated[str, typer.Option(help="batch sizes to time")] = "1,32",
) -> None:
    """Deep compression: [magnitude prune ->] weight sharing -> Huffman coding into model.tslim."""
    from rich.console import Console
    from rich.table import Table

    from torchslim._log import say
    from torchslim.artifacts import save_exported
    from torchslim.errors import ConfigError
    from torchslim.pipeline.deep_compression import deep_compress
    from torchslim.share import tslim_info, validate_step

    config = validate_step({"bits": bits, "finetune_epochs": centroid_epochs})
    if not 0 <= prune_ratio < 1:
        raise ConfigError(f"--prune-ratio must be in [0, 1) (the share of each layer's weights set to zero), got {prune_ratio}.")
    if prune_steps < 1 or finetune_epochs < 0:
        raise ConfigError("--prune-steps must be >= 1 and --finetune-epochs >= 0.")
    sizes = parse_batch_sizes(batch_sizes)
    dev, handle, bundle, out_dir = _prepare(model, data, weights, device, seed, out)
    rows, path, loaded = deep_compress(handle.model, bundle, out_dir, share_config=config, prune_ratio=prune_ratio,
                                       prune_steps=prune_steps, prune_finetune_epochs=finetune_epochs, device=dev,
                                       seed=seed, log=say)
    console = Console()
    table = Table(title=f"{model}: deep compression stage by stage")
    for col in ("stage", "accuracy", "bits/weight", "size on disk", "x smaller than fp32"):
        table.add_column(col, justify="right" if col != "stage" else "left")
    for r in rows:
        table.add_row(r.stage, f"{r.accuracy * 100:.2f} %", f"{r.bits_per_weight:.3f}", f"{r.size_bytes:,} B",
                      f"{r.smaller_than_fp32:.1f}x")
    console.print(table)
    info = tslim_info(path)
    console.print(f"{path}: {info['file_bytes']:,} B = structure {info['structure_bytes']:,} B + weights "
                  f"{info['weight_bytes']:,} B + header {info['header_bytes']:,} B")
    example = tuple(t.to(dev) for t in bundle.example_inputs(2))
    base = save_exported(handle.model, out_dir / "original.pt2", example, task=bundle.task)
    say("measuring the original .pt2 and the .tslim")
    metrics = {"original (.pt2)": _measure(handle.model, base, "eager", bundle, dev, sizes),
               "deep-compressed (.tslim)": _measure(loaded, path, "tslim", bundle, dev, sizes)}
    console.print(_metrics_table(f"{model} against the original", metrics))
    console.print("note: the .tslim is decoded to dense fp32 at load: smaller on disk, no speed-up.")
    summary = {"stages": [r.to_dict() for r in rows], "tslim": info,
               "metrics": {k: m.model_dump() for k, m in metrics.items()}}
    (out_dir / "share.json").write_text(json.dumps(summary, indent=2))
