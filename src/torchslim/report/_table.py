from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table

from torchslim.report._changes import changes_summary, refusal_lines
from torchslim.report._model import Candidate, Report


def _fmt_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _extra_cells(m, b, workload: bool) -> list[str]:
    """Cold start, and for text the sentence workload (batched, one by one) with its speed-up."""
    cells = [f"{m.cold_start_ms:.0f}" if m.cold_start_ms is not None else "-"]
    if workload:
        for key in ("batched_s", "one_by_one_s"):
            value = getattr(m.workload, key) if m.workload else None
            base = getattr(b.workload, key) if b and b.workload else None
            speed = f" ({base / value:.1f}x)" if value and base else ""
            cells.append(f"{value:.3f}{speed}" if value is not None else "-")
    return cells


def _row(c: Candidate, base: Candidate, metric: str, batch_keys: list[str], workload: bool = False) -> list[str]:
    m, b = c.metrics, base.metrics
    if m is None:
        return [c.name, c.status, c.error or "", *[""] * (6 + len(batch_keys) + 2 * workload)]
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
        *_extra_cells(m, b, workload),
        "yes" if c.within_budget else "no",
    ]


def _footnotes(report: Report, console: Console) -> None:
    """Below the table: no-gain notes, the busy-machine warning, winners, layers kept in float."""
    for c in report.candidates:
        for note in c.note_texts("no_speedup"):
            console.print(f"[dim]{c.name}: {note}[/]", highlight=False)
    busy = [c.name for c in [report.baseline, *report.candidates] if c.note_texts("busy_machine")]
    if busy:
        console.print(f"[yellow]warning: {', '.join(busy)} measured while other processes used the CPU: their latencies "
                      "and speed-ups are unreliable; re-run on an idle machine[/]", highlight=False)
    if report.winners:
        picks = ", ".join(f"{o}: {n or '-'}" for o, n in report.winners.items())
        console.print(f"winners by objective: {picks}", highlight=False)
    for line in refusal_lines(report):
        console.print(f"[yellow]{line}[/]", highlight=False)
    for c in report.candidates:
        if c.status == "ok" and (summary := changes_summary(c)):
            console.print(f"[dim]{c.name}: {summary}[/]", highlight=False)
    for c in report.candidates:
        if c.fallback is not None and c.fallback.kept_in_float:
            f = c.fallback
            console.print(f"{c.name}: kept in float by fallback: {', '.join(f.kept_in_float)} ({f.metric} "
                          f"{f.quantized:.4f} all int8 -> {f.final:.4f})", highlight=False)


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
    table.add_column("cold start ms", justify="right")
    workload = any(c.metrics is not None and c.metrics.workload is not None for c in [base, *report.candidates])
    if workload:
        table.add_column("sentences b32 s", justify="right")
        table.add_column("one by one s", justify="right")
    table.add_row(*_row(base, base, metric, keys, workload)[:-1], "-", style="dim")
    for c in report.candidates:
        if c.metrics is None:
            row = [c.name, c.status, (c.error or "")[:60]] + [""] * (5 + len(keys) + 2 * workload) + ["no"]
        else:
            row = _row(c, base, metric, keys, workload)
        won = [o for o, name in report.winners.items() if name == c.name]
        if won:
            row[0] = f"{c.name} \\[best {'/'.join(won)}]"
        style = "bold green" if c.name == report.best else ("red" if c.status == "failed" else None)
        table.add_row(*row, style=style)
    console.print(table)
    _footnotes(report, console)
    if report.best:
        console.print(f"[bold green]best ({report.objective}):[/] {report.best}")
    else:
        console.print("[yellow]no candidate is within the accuracy budget[/]")
    return table
