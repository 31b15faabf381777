from __future__ import annotations

from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("report")(report_cmd)


def report_cmd(
    run_dir: Annotated[str, typer.Argument(help="a run directory written by `torchslim optimize`")],
) -> None:
    """Re-render report.html and the results table from RUN_DIR/report.json."""
    from pathlib import Path

    from torchslim.pipeline import write_html
    from torchslim.report import load_report, render_table, totals_line

    report = load_report(run_dir)  # validates against the schema; exit 2 when missing or invalid
    folder = Path(run_dir).parent if Path(run_dir).is_file() else Path(run_dir)
    path = write_html(report, folder)
    render_table(report)
    if isinstance(totals := getattr(report, "executor", None), dict):  # an --executor ray run
        typer.echo(totals_line(totals))
    typer.echo(f"report: {path}")
