from __future__ import annotations

from typing import Annotated

import typer

from torchslim.cli._common import parse_batch_sizes


def register(app: typer.Typer) -> None:
    app.command("optimize")(optimize_cmd)
    app.command("models")(models_cmd)


def optimize_cmd(
    model: Annotated[str, typer.Option(help="MODEL spec: zoo name, file.py:factory, module:factory or hf:DIR")] = "digits-cnn",
    data: Annotated[str, typer.Option(help="DATA spec: digits, npz:FILE, imagefolder:DIR, text:FILE, module:function")] = "digits",
    weights: Annotated[str | None, typer.Option(help="state_dict for a factory model (.pt or .safetensors)")] = None,
    max_accuracy_drop: Annotated[float, typer.Option(help="accuracy budget in percentage points")] = 1.0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
    out: Annotated[str | None, typer.Option(help="run directory (default runs/<timestamp>)")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    batch_sizes: Annotated[str, typer.Option(help="batch sizes to time, comma separated")] = "1,32",
) -> None:
    """Search recipes of compression techniques; keep the best candidate within the budget."""
    from torchslim.pipeline import optimize
    from torchslim.report import render_table

    report = optimize(model, data, weights=weights, max_accuracy_drop=max_accuracy_drop, device=device,
                      out=out, seed=seed, batch_sizes=parse_batch_sizes(batch_sizes))
    render_table(report)
    typer.echo(f"report: {report.run_dir}/report.json")


def models_cmd() -> None:
    """List the built-in models."""
    from rich.console import Console
    from rich.table import Table

    from torchslim import zoo

    table = Table(title="built-in models")
    table.add_column("name")
    table.add_column("description")
    table.add_column("accuracy floor on digits")
    for name in zoo.list_models():
        entry = zoo.get_entry(name)
        table.add_row(name, entry.description, f"{entry.min_test_accuracy:.1%}")
    Console().print(table)
