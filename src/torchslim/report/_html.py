"""report.html: one self-contained file rendered from a ``Report`` (report.json).

Self-contained means no network at all: CSS is inline, plots are inline SVG, there are no
scripts, fonts or links to fetch. The page opens the same from a mail attachment, an
air-gapped machine, or a CI artifact store.
"""

from __future__ import annotations

from html import escape

from torchslim.report._model import Candidate, Report
from torchslim.report._plots import pareto_svg, sensitivity_svg
from torchslim.report._table import _fmt_bytes

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#212121;max-width:1500px}
h1{font-size:1.5em;margin-bottom:.2em} h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0} th,td{border:1px solid #ddd;padding:4px 7px;text-align:right;vertical-align:top}
th{background:#f5f5f5} td.l,th.l{text-align:left} tr.best td{background:#fff8e1;font-weight:600}
tr.failed td{color:#b71c1c} tr.skipped td{color:#757575} .badge{background:#f9a825;color:#000;border-radius:3px;padding:0 4px;font-size:.8em}
.yes{color:#2e7d32} .no{color:#b71c1c} .summary{background:#e8f5e9;border-left:4px solid #2e7d32;padding:8px 12px}
.summary.none{background:#fff3e0;border-left-color:#ef6c00} figure{display:inline-block;margin:8px 16px 8px 0}
figcaption{font-size:.8em;color:#555} .steps{font-family:ui-monospace,monospace;font-size:.9em} ul.notes li{margin:2px 0}
"""


def _batch_keys(report: Report) -> list[str]:
    keys: list[str] = []
    for c in [report.baseline, *report.candidates]:
        if c.metrics:
            keys += [k for k in c.metrics.latency_ms if k not in keys]
    return sorted(keys, key=int)


def _speedup(c: Candidate, base: Candidate, key: str) -> float | None:
    if not (c.metrics and base.metrics) or key not in c.metrics.latency_ms or key not in base.metrics.latency_ms:
        return None
    p50 = c.metrics.latency_ms[key].p50
    return base.metrics.latency_ms[key].p50 / p50 if p50 > 0 else None


def _row(c: Candidate, report: Report, keys: list[str], is_baseline: bool = False) -> str:
    base, m = report.baseline, c.metrics
    name = escape(c.name) + (' <span class="badge">best</span>' if c.name == report.best else "")
    steps = escape(" → ".join(c.steps) or ("(unoptimized)" if is_baseline else "(no steps)"))
    cells = [f'<td class="l">{name}</td>', f'<td class="l steps">{steps}</td>', f'<td class="l">{escape(c.status)}</td>']
    if m is None:
        cells.append(f'<td class="l" colspan="{7 + 2 * len(keys)}">{escape(c.error or "")}</td>')
    else:
        drop = (base.metrics.accuracy - m.accuracy) * 100 if base.metrics else 0.0
        ratio = base.metrics.size_bytes / m.size_bytes if base.metrics and m.size_bytes else None
        cells += [f"<td>{m.accuracy * 100:.2f}</td>", f"<td>{drop:+.2f}</td>", f"<td>{_fmt_bytes(m.size_bytes)}</td>",
                  f"<td>{f'x{ratio:.2f}' if ratio else '-'}</td>"]
        for k in keys:
            lat = m.latency_ms.get(k)
            speed = _speedup(c, base, k)
            speed_text = f" (x{speed:.2f})" if speed and not is_baseline else ""
            cells.append(f"<td>{lat.p50:.3f}{speed_text}</td><td>{lat.p95:.3f}</td>" if lat else "<td>-</td><td>-</td>")
        cells += [f"<td>{m.throughput_per_s:,.0f}</td>", f"<td>{m.peak_memory_bytes / 2**20:.1f}</td>", f'<td class="l">{escape(m.runtime)}</td>']
    within = "-" if is_baseline else ('<span class="yes">yes</span>' if c.within_budget else '<span class="no">no</span>')
    cells.append(f"<td>{within}</td>")
    notes = [escape(n) for n in c.note_texts()] + ([escape(c.error)] if c.error and m is not None else [])
    cells.append(f'<td class="l">{"<br>".join(notes)}</td>')
    classes = " ".join(x for x in ["best" if c.name == report.best else "", c.status, "baseline" if is_baseline else ""] if x)
    return f'<tr class="{classes}" data-name="{escape(c.name)}">' + "".join(cells) + "</tr>"


def _candidate_table(report: Report) -> str:
    keys = _batch_keys(report)
    metric = "fidelity" if report.metric == "fidelity" else "accuracy"
    head = ['<th class="l">candidate</th>', '<th class="l">steps</th>', '<th class="l">status</th>', f"<th>{metric} %</th>",
            "<th>drop (pts)</th>", "<th>size</th>", "<th>ratio</th>"]
    for k in keys:
        head += [f"<th>p50 ms b={k} (speed-up)</th>", f"<th>p95 ms b={k}</th>"]
    head += ["<th>throughput /s</th>", "<th>peak memory MiB</th>", '<th class="l">runtime</th>', "<th>within budget</th>",
             '<th class="l">notes</th>']
    rows = [_row(report.baseline, report, keys, is_baseline=True)] + [_row(c, report, keys) for c in report.candidates]
    return ('<table id="candidates"><thead><tr>' + "".join(head) + "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def _kv_table(pairs: list[tuple[str, object]], table_id: str) -> str:
    rows = "".join(f'<tr><th class="l">{escape(str(k))}</th><td class="l">{escape(str(v))}</td></tr>' for k, v in pairs)
    return f'<table id="{table_id}">{rows}</table>'


def _no_speedup_notes(report: Report) -> list[str]:
    """The measured no-speed-up notes of every candidate, one line each."""
    return [f"{c.name}: {n}" for c in report.candidates for n in c.note_texts("no_speedup")]


def _summary(report: Report) -> str:
    best = report.candidate(report.best) if report.best else None
    if best is None or best.metrics is None or report.baseline.metrics is None:
        return ('<p class="summary none" id="summary">No candidate stayed within the accuracy budget of '
                f'{report.budget.get("max_accuracy_drop")} points; the baseline remains the best model.</p>')
    base = report.baseline.metrics
    key = min(best.metrics.latency_ms, key=int)
    speed = _speedup(best, report.baseline, key)
    drop = (base.accuracy - best.metrics.accuracy) * 100
    return (f'<p class="summary" id="summary">Best within {report.budget.get("max_accuracy_drop")} points: '
            f"<b>{escape(best.name)}</b> — x{speed or 0:.2f} batch-{key} latency, "
            f"x{base.size_bytes / max(best.metrics.size_bytes, 1):.2f} smaller on disk, "
            f"{drop:+.2f} points ({escape(best.metrics.runtime)}; artifact {escape(best.artifact or '-')}).</p>")


def render_html(report: Report) -> str:
    """The whole page as one string."""
    env = report.environment
    parts = [
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<title>torchslim report: {escape(report.model)}</title><style>{_CSS}</style></head><body>",
        f"<h1>torchslim report: {escape(report.model)} on {escape(report.data)}</h1>",
        f"<p>recipe <b>{escape(str(report.recipe or '-'))}</b> · created {escape(report.created)} · torchslim "
        f"{escape(report.torchslim_version)} · task {escape(report.task)}, metric {escape(report.metric)} on the held-out split · "
        f"budget {report.budget.get('max_accuracy_drop')} points</p>",
        _summary(report),
        "<h2>Environment</h2>",
        _kv_table([(k, env[k]) for k in env], "environment"),
        "<h2>Baseline</h2>",
    ]
    b = report.baseline.metrics
    if b is not None:
        lat = "; ".join(f"b={k}: p50 {v.p50:.3f} ms, p95 {v.p95:.3f} ms, cv {v.cv:.2f}" for k, v in sorted(b.latency_ms.items(), key=lambda kv: int(kv[0])))
        parts.append(_kv_table([(report.metric, f"{b.accuracy * 100:.2f} %"), ("size on disk", f"{b.size_bytes:,} B"),
                                ("params", f"{b.params:,}"), ("MACs", f"{b.macs:,}" if b.macs is not None else "n/a"),
                                ("latency", lat), ("throughput", f"{b.throughput_per_s:,.0f} samples/s"),
                                ("peak memory", f"{b.peak_memory_bytes / 2**20:.1f} MiB"), ("runtime", b.runtime)], "baseline"))
    parts += ["<h2>Candidates</h2>", _candidate_table(report), '<h2>Trade-offs</h2><div id="plots">']
    for axis, caption in (("latency", "accuracy vs latency"), ("size", "accuracy vs size on disk")):
        svg = pareto_svg(report, axis)
        if svg:
            parts.append(f'<figure class="plot" id="plot-{axis}">{svg}<figcaption>{caption}: green = within budget, '
                         "grey = outside, dashed red = the budget line, star = the best</figcaption></figure>")
    parts.append("</div>")
    sens = sensitivity_svg(report)
    if sens:
        parts.append('<h2>Per-layer sensitivity</h2><figure class="plot" id="plot-sensitivity">' + sens +
                     "<figcaption>validation split; not used for any reported metric</figcaption></figure>")
    slow = _no_speedup_notes(report)
    parts.append('<h2>Notes</h2><ul class="notes" id="notes">')
    parts += [f'<li class="no-speedup">{escape(n)}</li>' for n in slow]
    parts += [f'<li class="busy">baseline: {escape(n)}</li>' for n in report.baseline.note_texts()]
    for c in report.candidates:
        if c.status != "ok":
            parts.append(f'<li class="{escape(c.status)}">{escape(c.name)} {escape(c.status)}: {escape(c.error or "")}</li>')
        parts += [f"<li>{escape(c.name)}: {escape(n)}</li>" for n in c.note_texts("technique", "not_smaller", "busy_machine", "warning")]
    if not slow and all(c.status == "ok" for c in report.candidates):
        parts.append("<li>every candidate was faster than the baseline at every batch size measured.</li>")
    parts.append("</ul></body></html>")
    return "\n".join(parts)
