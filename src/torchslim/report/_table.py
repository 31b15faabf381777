from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table

from torchslim.report._model import Candidate, Report


def _fmt_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _row(c: Candidate, base: Candidate, metric: str, batch_keys: list[str]) -> list[str]:
    m, b = c.metrics, base.metrics
    if m is None:
        return [c.name, c.status, c.error or "", *[""] * (5 + len(batch_keys))]
    drop = (b.accuracy - m.accuracy) * 100 if b else 0.0
    lat = []
    for k in batch_keys:
        entry = m.latency_ms.get(k)
        if entry is None:
            lat.append("-")
            continue
        speed = ""
        if b and k in b.latency_ms and entry.p50 > 0:
            speed = f" ({b.latency_ms[k].p50 / entry.p50:.1f}x)"
        lat.append(f"{entry.p50:.3f}{speed}")
    ratio = f"{b.size_bytes / m.size_bytes:.1f}x" if b and m.size_bytes else "-"
    return [
        c.name,
        c.status,
        f"{m.accuracy * 100:.2f}",
        f"{drop:+.2f}",
        f"{_fmt_bytes(m.size_bytes)} ({ratio})",
        f"{m.params:,}",
        m.runtime,
        *lat,
        "yes" if c.within_budget else "no",
    ]


def render_table(report: Report, console: Console | None = None) -> Table:
    """A rich table of the baseline and every candidate; the best row is highlighted."""
    # Piped output (CI logs, `| tee`) would be cut to 80 columns; a results table needs its width.
    console = console or Console(width=None if sys.stdout.isatty() else 200)
    base = report.baseline
    keys: list[str] = []
    for c in [base, *report.candidates]:
        if c.metrics:
            keys += [k for k in c.metrics.latency_ms if k not in keys]
    keys.sort(key=int)
    metric = "fidelity" if report.metric == "fidelity" else "acc"
    table = Table(title=f"torchslim: {report.model} on {report.data} (budget {report.budget['max_accuracy_drop']} pts)")
    for col in ["candidate", "status", f"{metric} %", "drop pts", "size (ratio)", "params", "runtime"]:
        table.add_column(col)
    for k in keys:
        table.add_column(f"p50 ms b={k} (speed-up)", justify="right")
    table.add_column("in budget")
    table.add_row(*_row(base, base, metric, keys)[:-1], "-", style="dim")
    for c in report.candidates:
        if c.metrics is None:
            row = [c.name, c.status, (c.error or "")[:60]] + [""] * (4 + len(keys)) + ["no"]
        else:
            row = _row(c, base, metric, keys)
        won = [o for o, name in report.winners.items() if name == c.name]
        if won:
            row[0] = f"{c.name} \\[best {'/'.join(won)}]"
        style = "bold green" if c.name == report.best else ("red" if c.status == "failed" else None)
        table.add_row(*row, style=style)
    console.print(table)
    for c in report.candidates:
        for note in c.note_texts("no_speedup"):
            console.print(f"[dim]{c.name}: {note}[/]", highlight=False)
    busy = [c.name for c in [base, *report.candidates] if c.note_texts("busy_machine")]
    if busy:
        console.print(f"[yellow]warning: {', '.join(busy)} measured while other processes used the CPU: their latencies "
                      "and speed-ups are unreliable; re-run on an idle machine[/]", highlight=False)
    if report.winners:
        picks = ", ".join(f"{o}: {n or '-'}" for o, n in report.winners.items())
        console.print(f"winners by objective: {picks}", highlight=False)
    if report.best:
        console.print(f"[bold green]best ({report.objective}):[/] {report.best}")
    else:
        console.print("[yellow]no candidate is within the accuracy budget[/]")
    return table
