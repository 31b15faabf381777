"""Where the time of an ``--executor ray`` run went: per candidate (the node it was built on
and timed on, its build, wait and measure times) and the run's totals, in words for the
terminal and as HTML. Local runs have neither (``execution`` and ``executor`` are absent)."""

from __future__ import annotations

from html import escape

from torchslim.report._model import Candidate, Report


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


def totals_line(totals: dict) -> str:
    """The line under the results table: "built on 3 nodes in 9m12s, measured on the target in 2m40s"."""
    n = len(totals["build_nodes"])
    return (f"built on {n} node{'s' if n != 1 else ''} in {_clock(totals['build_span_s'])} "
            f"({_clock(totals['build_s'])} of builds, {_clock(totals['wait_s'])} queued), "
            f"measured on the target in {_clock(totals['measure_s'])}")


def execution_text(c: Candidate) -> str | None:
    """"built on 1a2b3c4d in 4.2 s (2 attempts), waited 1.3 s, timed on 9c0d1e2f in 2.0 s"."""
    e = c.execution
    if e is None:
        return None
    parts = []
    if e.built_on:
        tries = f", {e.attempts} attempts" if e.attempts > 1 else ""
        parts.append(f"built on node {e.built_on[:8]}" + (f" in {e.build_s:.1f} s" if e.build_s is not None else "") + tries)
    if e.wait_s is not None:
        parts.append(f"waited {e.wait_s:.1f} s")
    if e.measured_on:
        parts.append(f"timed on node {e.measured_on[:8]}" + (f" in {e.measure_s:.1f} s" if e.measure_s is not None else ""))
    return ", ".join(parts) or None


def execution_html(c: Candidate) -> str:
    text = execution_text(c)
    return f'<p class="execution">{escape(text)}</p>' if text else ""


def totals_html(report: Report) -> str:
    totals = getattr(report, "executor", None)
    if not isinstance(totals, dict) or "build_nodes" not in totals:
        return ""
    return f'<p class="meta" id="executor-totals">ray: {escape(totals_line(totals))}</p>'
