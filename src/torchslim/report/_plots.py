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


def _legend_and_axes(ax, other_winners: bool, xlabel: str, metric: str, axis: str) -> None:
    if other_winners:
        ax.scatter([], [], s=150, facecolors="none", edgecolors=_BEST, linewidths=1.6, label="winner of another objective")
    ax.scatter([], [], s=40, color=_OK, label="within budget")
    ax.scatter([], [], s=40, color=_OUT, label="outside budget")
    ax.set_xlabel(xlabel, fontsize=10)
    ax.set_ylabel(metric, fontsize=10)
    ax.set_title(f"{metric.split()[0]} vs {'latency' if axis == 'latency' else 'size'}", fontsize=12)
    ax.grid(True, which="both", alpha=0.25)


def pareto_svg(report: Report, axis: str) -> str | None:
    """Accuracy vs batch-1 p50 latency (``axis="latency"``) or vs size on disk (``"size"``):
    every measured candidate labelled (labels placed so none overlap; ``<g id="label-AXIS-i">``
    in the SVG), the baseline, this chart's Pareto front, the budget line and the winners."""
    from matplotlib.figure import Figure

    from torchslim.report._labels import place_labels

    if report.baseline.metrics is None:
        return None
    if axis == "latency":
        key, x_of = _latency_of(report)
        xlabel = f"p50 latency at batch {key} (ms, log scale, lower is better)"
    else:
        def x_of(c: Candidate) -> float | None:
            return c.metrics.size_bytes / 1024 if c.metrics else None

        xlabel = "size on disk (KiB, log scale, lower is better)"
    metric = "fidelity x100" if report.metric == "fidelity" else "accuracy %"
    base_x, base_y = x_of(report.baseline), report.baseline.metrics.accuracy * 100
    budget_y = base_y - float(report.budget.get("max_accuracy_drop", 0))
    # Far below the budget a point says only "lost too much": it sits on the floor (a down
    # triangle, its value in its label) rather than stretching the axis until the candidates
    # that matter crowd into a few pixels.
    floor = budget_y - 2 * max(base_y - budget_y, 0.5)
    points = [(c, x, max(y, floor)) for c, x, y in _points(report, x_of)]
    # 72 dpi: one display pixel is one SVG unit, so label boxes measured here are the page's.
    fig = Figure(figsize=(12.5, 6.2), dpi=72)
    fig.subplots_adjust(left=0.07, right=0.985, top=0.93, bottom=0.2)
    ax = fig.add_subplot()
    winners = {n for n in report.winners.values() if n}
    for c, x, y in points:
        ax.scatter([x], [y], s=40, color=_OK if c.within_budget else _OUT, edgecolors="white", linewidths=0.6, zorder=3,
                   marker="v" if y == floor else "o")
        if c.name in winners and c.name != report.best:
            ax.scatter([x], [y], s=150, facecolors="none", edgecolors=_BEST, linewidths=1.6, zorder=4)
    front = _front([(x, y) for _, x, y in points] + ([(base_x, base_y)] if base_x is not None else []))
    if len(front) > 1:
        ax.step([p[0] for p in front], [p[1] for p in front], where="post", color=_OK, alpha=0.6, lw=1.2,
                label="Pareto front (nothing is both better and smaller/faster)")
    obstacles = []
    if base_x is not None:
        ax.scatter([base_x], [base_y], marker="s", s=56, color=_BASE, zorder=4, label="baseline")
        obstacles.append((base_x, base_y))
    ax.axhline(budget_y, color=_BUDGET, ls="--", lw=1.2, label=f"accuracy budget ({budget_y:.2f})")
    best = report.candidate(report.best) if report.best else None
    if best is not None and best.metrics is not None and x_of(best) is not None:
        ax.scatter([x_of(best)], [best.metrics.accuracy * 100], marker="*", s=320, color=_BEST,
                   edgecolors="black", zorder=5, label=f"chosen ({report.objective}): {best.name}")
    _legend_and_axes(ax, bool(winners - {report.best}), xlabel, metric, axis)
    _limits(ax, points, base_x, base_y, budget_y)
    labels = [(x, y, c.name + (f" ({c.metrics.accuracy * 100:.1f})" if y == floor else ""), f"label-{axis}-{i}")
              for i, (c, x, y) in enumerate(points)]
    if base_x is not None:
        labels.append((base_x, base_y, "baseline", f"label-{axis}-{len(points)}"))
    place_labels(ax, labels)
    fig.legend(*ax.get_legend_handles_labels(), loc="lower center", ncol=3, fontsize=8.5, frameon=False)
    return _svg(fig, f"pareto-{axis}")


def _limits(ax, points, base_x, base_y, budget_y) -> None:
    """Log x with room around the points (a near-flat range is widened so equal values do not
    look far apart); y spans the points, the baseline and the budget line."""
    xs = [x for _, x, _ in points if x > 0] + ([base_x] if base_x else [])
    ys = [y for _, _, y in points] + [base_y, budget_y]
    ax.set_xscale("log")
    if xs:
        low, high = min(xs), max(xs)
        if high / low < 4:
            middle = (low * high) ** 0.5
            low, high = min(low, middle / 2), max(high, middle * 2)
        ax.set_xlim(low / 1.5, high * 1.5)
    span = max(max(ys) - min(ys), 0.5)
    ax.set_ylim(min(ys) - 0.12 * span, max(ys) + 0.15 * span)


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
    rows = rows[:60]
    fig = Figure(figsize=(11, max(2.2, 0.26 * len(rows) + 1.3)), dpi=72)
    ax = fig.add_subplot()
    names = [r["name"] for r in rows][::-1]
    drops = [r["accuracy_drop"] for r in rows][::-1]
    ax.barh(range(len(rows)), drops, color=["#c62828" if d > 0 else "#90a4ae" for d in drops], height=0.7)
    ax.set_yticks(range(len(rows)), names, fontsize=9)  # one tick per layer, each name in full
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.axvline(0, color="black", lw=0.8)
    # A negative drop is a gain (pruning that layer helped on the validation split): said on the axis.
    ax.set_xlabel(f"{sens.get('metric', 'accuracy')} drop, points (validation split; right of 0, red: pruning the layer "
                  "hurts; left of 0, grey: it gained)", fontsize=10)
    ax.set_title(f"per-layer sensitivity: {sens.get('ratio', 0):.0%} of one layer's weights pruned", fontsize=11)
    ax.grid(True, axis="x", alpha=0.3)
    return _svg(fig, "sensitivity")
