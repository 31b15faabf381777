from __future__ import annotations

import sys

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from torchslim.core.log import printable
from torchslim.report._changes import changes_summary, refusal_lines
from torchslim.report._model import Candidate, Report

TABLE_WIDTH = 120  # the widest terminal the table is laid out for


def _shown(text: str) -> str:
    """A spec or an error (the user's file names) as table text: escapes shown, not run; no markup."""
    return escape(printable(text))


def _fmt_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _fmt_count(n: int) -> str:
    if n < 10_000:
        return f"{n:,}"
    return f"{n / 1e3:.1f}k" if n < 10_000_000 else f"{n / 1e6:.1f}M"


def _timed(value: float | None, base: float | None, digits: int = 3) -> str:
    """``value speed-up``: the speed-up against the baseline's same measurement, when it has one."""
    if value is None:
        return "-"
    speed = f" {base / value:.1f}x" if base and value > 0 else ""
    return f"{value:.{digits}f}{speed}"


def _columns(report: Report, workload: bool) -> tuple[list[str], list[tuple[str, str]]]:
    """The batch sizes shown (the smallest and the largest: the others are in report.html) and
    the columns. The table fits 120 columns: text runs trade params and cold start (both in
    report.json and the HTML) for the two sentence workloads."""
    keys: list[str] = []
    for c in [report.baseline, *report.candidates]:
        if c.metrics:
            keys += [k for k in c.metrics.latency_ms if k not in keys]
    keys.sort(key=int)
    keys = keys if len(keys) <= 2 else [keys[0], keys[-1]]
    metric = "fid %" if report.metric == "fidelity" else "acc %"
    columns = [(metric, "acc"), ("drop", "drop"), ("size", "size")]
    columns += [] if workload else [("params", "params")]
    columns += [("runtime", "runtime"), *[(f"b={k} ms", f"b{k}") for k in keys]]
    columns += [("sentences s", "batched_s"), ("1-by-1 s", "one_by_one_s")] if workload else [("cold ms", "cold")]
    return keys, [*columns, ("budget", "budget")]


def _cells(c: Candidate, base: Candidate, columns: list[tuple[str, str]]) -> list[str]:
    m, b = c.metrics, base.metrics
    if m is None:  # why it did not run is said below the table
        return [c.status, *["-"] * (len(columns) - 1)]
    values = {
        "acc": f"{m.accuracy * 100:.2f}",
        "drop": f"{(b.accuracy - m.accuracy) * 100 if b else 0.0:+.2f}",
        "size": f"{_fmt_bytes(m.size_bytes)} {b.size_bytes / m.size_bytes:.1f}x" if b and m.size_bytes else _fmt_bytes(m.size_bytes),
        "params": _fmt_count(m.params),
        "runtime": m.runtime,
        "cold": f"{m.cold_start_ms:.0f}" if m.cold_start_ms is not None else "-",
        "budget": "-" if c is base else ("yes" if c.within_budget else "no"),
    }
    for key in ("batched_s", "one_by_one_s"):
        mine = getattr(m.workload, key) if m.workload else None
        values[key] = _timed(mine, getattr(b.workload, key) if b and b.workload else None)
    for k, entry in m.latency_ms.items():
        values[f"b{k}"] = _timed(entry.p50, b.latency_ms[k].p50 if b and k in b.latency_ms else None)
    return [values.get(key, "-") for _, key in columns]


def _footnotes(report: Report, console: Console) -> None:
    """Below the table: no-gain notes, the busy-machine warning, winners, layers kept in float."""
    for c in report.candidates:
        if c.metrics is None and c.error:
            console.print(f"[red]{escape(c.name)} {c.status}:[/] {_shown(c.error.splitlines()[0])}", highlight=False)
    for c in report.candidates:
        for note in c.note_texts("no_speedup"):
            console.print(f"[dim]{c.name}: {note}[/]", highlight=False)
    busy = [c.name for c in [report.baseline, *report.candidates] if c.note_texts("busy_machine")]
    if busy:
        who = "the baseline and every candidate were" if len(busy) > 2 and len(busy) == 1 + len(report.candidates) else ", ".join(busy)
        console.print(f"[yellow]warning: {escape(who)} measured while other processes used the CPU: their latencies "
                      "and speed-ups are unreliable; re-run on an idle machine[/]", highlight=False)
    if report.winners:
        picks = ", ".join(f"{o}: {n or '-'}" for o, n in report.winners.items())
        console.print(f"winners by objective: {picks}", highlight=False)
    if report.runoff is not None:
        console.print(_shown(report.runoff.line()), highlight=False)
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
    """A rich table of the baseline and every candidate, 120 columns wide at most (piped output
    is laid out for a 120-column terminal); the best row is highlighted, the winners listed below."""
    console = console or Console(width=None if sys.stdout.isatty() else TABLE_WIDTH)
    base = report.baseline
    workload = any(c.metrics is not None and c.metrics.workload is not None for c in [base, *report.candidates])
    keys, columns = _columns(report, workload)
    table = Table(title=f"torchslim: {_shown(report.model)} on {_shown(report.data)} "
                        f"(budget {report.budget['max_accuracy_drop']} pts)")
    # No vertical rules and one space of padding: every column it saves goes to the names.
    table.box, table.pad_edge, table.padding = box.SIMPLE_HEAD, False, (0, 1, 0, 0)
    table.caption = "ratios (x) against the baseline: size smaller, latency faster; p50 latency per batch size"
    table.add_column("candidate", overflow="fold", min_width=14, ratio=1)
    for header, key in columns:
        table.add_column(header, justify="left" if key == "runtime" else "right", no_wrap=True)
    table.add_row(escape(base.name), *_cells(base, base, columns), style="dim")
    for c in report.candidates:
        style = "bold green" if c.name == report.best else ("red" if c.status == "failed" else None)
        table.add_row(escape(c.name), *_cells(c, base, columns), style=style)
    console.print(table)
    _footnotes(report, console)
    if report.best:
        console.print(f"[bold green]best ({report.objective}):[/] {escape(report.best)}")
    else:
        console.print("[yellow]no candidate is within the accuracy budget[/]")
    return table
