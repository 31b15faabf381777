from __future__ import annotations

from typing import Annotated

import typer

from torchslim.cli._common import SeedOption, parse_batch_sizes


def register(app: typer.Typer) -> None:
    app.command("optimize")(optimize_cmd)
    app.command("models")(models_cmd)
    app.command("recipes")(recipes_cmd)


def optimize_cmd(
    model: Annotated[str, typer.Option(help="MODEL spec: zoo name, file.py:factory, module:factory or hf:DIR")] = "digits-cnn",
    data: Annotated[str, typer.Option(help="DATA spec: digits, npz:FILE, imagefolder:DIR, text:FILE, text+corpus:FILE, module:function")] = "digits",
    recipe: Annotated[str, typer.Option(help="a built-in recipe NAME (see `torchslim recipes`) or a YAML FILE")] = "default",
    weights: Annotated[str | None, typer.Option(help="state_dict for a factory model (.pt or .safetensors)")] = None,
    max_accuracy_drop: Annotated[float, typer.Option(help="accuracy budget in percentage points")] = 1.0,
    objective: Annotated[str | None, typer.Option(help="what best means: latency (default), throughput, size or balanced")] = None,
    max_latency_ms: Annotated[float | None, typer.Option(help="candidates slower than this at batch 1 (p50) are not eligible")] = None,
    max_size_mb: Annotated[float | None, typer.Option(help="candidates larger than this on disk (MB = 10^6 bytes) are not eligible")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
    out: Annotated[str | None, typer.Option(help="run directory (default runs/<timestamp>)")] = None,
    time_budget: Annotated[float | None, typer.Option(help="seconds; no new candidate starts once it would be exceeded")] = None,
    seed: SeedOption = 0,
    resume: Annotated[bool, typer.Option("--resume", help="continue the run in --out, skipping measured candidates")] = False,
    batch_sizes: Annotated[str, typer.Option(help="batch sizes to time, comma separated")] = "1,32",
    executor: Annotated[str | None, typer.Option(help="local (default: one candidate at a time here) or ray (parallel builds on a Ray cluster, timed on its target node; docs/cluster.md)")] = None,
    ray_address: Annotated[str | None, typer.Option(help="the Ray cluster to join (default: RAY_ADDRESS, else Ray is started on this machine)")] = None,
) -> None:
    """Search recipes of compression techniques; keep the best candidate within the budget."""
    from torchslim.pipeline import Goal, MeasureOptions, RunOptions, optimize
    from torchslim.report import render_table, totals_line

    # The flags are the groups' fields spelled with dashes: a bad value is the group's ConfigError (exit 2).
    goal = Goal(objective=objective or None, max_accuracy_drop=max_accuracy_drop, max_latency_ms=max_latency_ms,
                max_size_mb=max_size_mb)
    run = RunOptions(out=out, resume=resume, weights=weights, device=device, seed=seed, time_budget=time_budget,
                     executor=executor or None, ray_address=ray_address)
    measure = MeasureOptions(batch_sizes=parse_batch_sizes(batch_sizes))
    report = optimize(model, data, recipe, goal=goal, run=run, measure=measure)
    render_table(report)
    if isinstance(totals := getattr(report, "executor", None), dict):  # --executor ray: where the time went
        typer.echo(totals_line(totals))
    typer.echo(f"report: {report.run_dir}/report.json, {report.run_dir}/report.html")


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


def recipes_cmd() -> None:
    """List the built-in recipes and their candidates."""
    import yaml
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from torchslim.pipeline import Recipe, describe_step, list_recipes, read_recipe_source

    table = Table(title="built-in recipes (use --recipe NAME, or --recipe FILE for your own YAML)", show_lines=True)
    table.add_column("name")
    table.add_column("description")
    table.add_column("candidates: steps")
    for name in list_recipes():
        # Shape only: listing must work even where a technique's backend is not installed.
        spec = Recipe.model_validate(yaml.safe_load(read_recipe_source(name)[1]))
        lines = []
        for c in spec.candidates:
            steps = " -> ".join(describe_step(k, v) for s in c.steps for k, v in s.items()) or "(none)"
            where = f" [{c.runtime}]" if c.runtime else ""
            only = f" (only {', '.join(c.devices)})" if c.devices else ""
            lines.append(f"{c.name}{where}{only}: {steps}")
        extra = [x for x, on in (("sensitivity", spec.sensitivity), ("search", spec.search), ("refine", spec.refine)) if on]
        desc = spec.description + (f"\n+ {', '.join(extra)}" if extra else "")
        table.add_row(name, escape(desc), escape("\n".join(lines)))
    Console().print(table)
