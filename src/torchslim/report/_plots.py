"""Plots for report.html, as inline SVG strings (no files, no network).

Figures are built with ``matplotlib.figure.Figure`` directly, never pyplot, so rendering a
report does not switch the global backend of a notebook that imported torchslim. Text stays
text (``svg.fonttype: none``): it is searchable, and the browser test reads it from the DOM.
"""

from __future__ import annotations

import io
import re

from torchslim.report._model import Candidate, Report

_OK, _OUT, _BASE, _BEST, _BUDGET = "#2e7d32", "#9e9e9e", "#000000", "#f9a825", "#c62828"


def _svg(fig, key: str) -> str:
    import matplotlib

    buf = io.StringIO()
    # A per-figure hash salt keeps element ids unique when several SVGs share one page.
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": key}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    # Inline SVG in HTML needs no namespace declarations, and metadata is not shown; dropping
    # both leaves the page with no URL-looking strings at all.
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)
    text = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", text)
    return re.sub(r"<svg\b", f'<svg role="img" aria-label="{key}" class="plot-svg"', text, count=1)


def _points(report: Report, x_of) -> list[tuple[Candidate, float, float]]:
    out = []
    for c in report.candidates:
        if c.status == "ok" and c.metrics is not None:
            x = x_of(c)
            if x is not None:
                out.append((c, x, c.metrics.accuracy * 100))
    return out


def _latency_of(report: Report):
    keys = sorted(report.baseline.metrics.latency_ms, key=int) if report.baseline.metrics else []
    key = keys[0] if keys else "1"

    def x_of(c: Candidate) -> float | None:
        entry = c.metrics.latency_ms.get(key) if c.metrics else None
        return entry.p50 if entry else None

    return key, x_of


def pareto_svg(report: Report, axis: str) -> str | None:
    """Accuracy vs batch-1 p50 latency (``axis="latency"``) or vs size on disk (``"size"``):
    every measured candidate, the baseline, the Pareto front, the budget line, the best starred."""
    from matplotlib.figure import Figure

    if report.baseline.metrics is None:
        return None
    if axis == "latency":
        key, x_of = _latency_of(report)
        xlabel = f"p50 latency at batch {key} (ms, lower is better)"
    else:
        def x_of(c: Candidate) -> float | None:
            return c.metrics.size_bytes / 1024 if c.metrics else None

        xlabel = "size on disk (KiB, lower is better)"
    metric = "fidelity x100" if report.metric == "fidelity" else "accuracy %"
    points = _points(report, x_of)
    base_x, base_y = x_of(report.baseline), report.baseline.metrics.accuracy * 100
    fig = Figure(figsize=(6.4, 4.2), dpi=100)
    ax = fig.add_subplot()
    for c, x, y in points:
        color = _OK if c.within_budget else _OUT
        ax.scatter([x], [y], s=36, color=color, zorder=3)
        ax.annotate(c.name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    front = _front([(x, y) for _, x, y in points] + ([(base_x, base_y)] if base_x is not None else []))
    if len(front) > 1:
        ax.step([p[0] for p in front], [p[1] for p in front], where="post", color=_OK, alpha=0.5, lw=1, label="Pareto front")
    if base_x is not None:
        ax.scatter([base_x], [base_y], marker="s", s=50, color=_BASE, zorder=4, label="baseline")
    budget_y = base_y - float(report.budget.get("max_accuracy_drop", 0))
    ax.axhline(budget_y, color=_BUDGET, ls="--", lw=1, label=f"budget ({budget_y:.2f})")
    best = report.candidate(report.best) if report.best else None
    if best is not None and best.metrics is not None and x_of(best) is not None:
        ax.scatter([x_of(best)], [best.metrics.accuracy * 100], marker="*", s=260, color=_BEST,
                   edgecolors="black", zorder=5, label=f"best: {best.name}")
    if axis == "size" and points:
        ax.set_xscale("log")
        xs = [x for _, x, _ in points] + ([base_x] if base_x is not None else [])
        low, high = min(xs), max(xs)
        if high / max(low, 1e-9) < 4:  # a near-flat log axis would make equal sizes look far apart
            middle = (low * high) ** 0.5
            ax.set_xlim(min(low, middle / 2) / 1.2, max(high, middle * 2) * 1.2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric.split()[0]} vs {'latency' if axis == 'latency' else 'size'}")
    ax.grid(True, alpha=0.3)
    ax.margins(x=0.12, y=0.08)  # room for the point labels
    ax.legend(fontsize=7, loc="best")
    return _svg(fig, f"pareto-{axis}")


def _front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Non-dominated points (lower x, higher y), sorted by x."""
    front, best_y = [], float("-inf")
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if y > best_y:
            front.append((x, y))
            best_y = y
    return front


def sensitivity_svg(report: Report) -> str | None:
    """Bar chart: the drop (points, validation split) when each layer alone is pruned."""
    from matplotlib.figure import Figure

    sens = report.sensitivity
    rows = (sens or {}).get("layers") or []
    if not rows:
        return None
    rows = rows[:40]
    fig = Figure(figsize=(6.4, max(2.0, 0.28 * len(rows) + 1.2)), dpi=100)
    ax = fig.add_subplot()
    names = [r["name"] for r in rows][::-1]
    drops = [r["accuracy_drop"] for r in rows][::-1]
    ax.barh(names, drops, color=["#c62828" if d > 0 else "#90a4ae" for d in drops])
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel(f"{sens.get('metric', 'accuracy')} drop, points (validation split)")
    ax.set_title(f"per-layer sensitivity: {sens.get('ratio', 0):.0%} of one layer's weights pruned")
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(True, axis="x", alpha=0.3)
    return _svg(fig, "sensitivity")
