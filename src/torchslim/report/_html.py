"""report.html: one self-contained file rendered from a ``Report`` (report.json), for people.

Reading order: the headline (the chosen winner in words) and one card per objective's winner;
the two trade-off charts; a compact table that fits a 1280 px window; then one folded section
per candidate with its steps, artifact, a snippet that loads it, its measurements and its notes
(grouped by kind, each said once); the per-layer sensitivity chart; the environment.

Self-contained means no network at all: CSS is inline, plots are inline SVG, there are no
scripts, fonts or links to fetch. The page opens the same from a mail attachment, an
air-gapped machine, or a CI artifact store.
"""

from __future__ import annotations

from html import escape

from torchslim.report._changes import refusals_html
from torchslim.report._execution import execution_html, totals_html
from torchslim.report._html_details import candidate_details
from torchslim.report._model import Candidate, Report
from torchslim.report._plots import pareto_svg, sensitivity_svg
from torchslim.report._table import _fmt_bytes
from torchslim.report._words import OBJECTIVE_WORDS, artifact_path, in_words, speedup

_CSS = """
*{box-sizing:border-box} body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;padding:20px 24px;
color:#212121;max-width:1280px;line-height:1.4}
h1{font-size:1.45em;margin:0 0 .2em} h2{font-size:1.15em;margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:2px}
.meta{color:#555;font-size:.9em;margin-top:0}
.headline{font-size:1.25em;background:#e8f5e9;border-left:5px solid #2e7d32;padding:10px 14px;margin:14px 0}
.headline.none{background:#fff3e0;border-left-color:#ef6c00}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(270px,1fr));gap:12px}
.card{border:1px solid #ddd;border-radius:6px;padding:10px 12px;background:#fafafa;min-width:0}
.card.chosen{border:2px solid #f9a825;background:#fffde7} .card h3{margin:0;font-size:.8em;text-transform:uppercase;color:#555;letter-spacing:.04em}
.card .name{font-size:1.1em;font-weight:600;margin:.2em 0;overflow-wrap:anywhere} .card p{margin:.2em 0;font-size:.9em}
.card code{font-size:.85em;overflow-wrap:anywhere}
figure{margin:10px 0} figcaption{font-size:.85em;color:#555} svg.plot-svg{display:block;width:100%;height:auto}
.charts{display:grid;grid-template-columns:1fr;gap:8px}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0;width:100%} th,td{border:1px solid #e0e0e0;padding:4px 6px;text-align:right;vertical-align:top}
th{background:#f5f5f5;font-weight:600} td.l,th.l{text-align:left} td.name{max-width:300px} td.name a{overflow-wrap:anywhere}
tr.best td{background:#fff8e1} tr.failed td{color:#b71c1c} tr.skipped td{color:#757575} td.err{overflow-wrap:anywhere;font-size:.9em}
.badge{background:#f9a825;color:#000;border-radius:3px;padding:0 4px;font-size:.78em;white-space:nowrap;margin-left:3px}
.badges{display:flex;flex-wrap:wrap;gap:3px;margin-top:2px} .badges .badge{margin-left:0}
.yes{color:#2e7d32} .no{color:#b71c1c}
details.candidate{border:1px solid #e0e0e0;border-radius:6px;margin:6px 0;padding:6px 12px}
details.candidate>summary{cursor:pointer;font-weight:600} details.candidate>summary .sub{font-weight:400;color:#555}
ol.steps{font-family:ui-monospace,monospace;font-size:.9em;margin:.3em 0}
pre.snippet{background:#263238;color:#eceff1;padding:10px 12px;border-radius:5px;font-size:.85em;white-space:pre-wrap;
overflow-wrap:anywhere;user-select:all;-webkit-user-select:all;margin:.3em 0}
.hint{color:#757575;font-size:.8em} details.notes{margin:.4em 0} details.notes>summary{cursor:pointer}
details.notes h4{margin:.4em 0 .1em;font-size:.9em} ul.notes{margin:.1em 0 .4em;padding-left:1.4em} ul.notes li{margin:2px 0}
details.changes{margin:.4em 0} details.changes>summary{cursor:pointer} table.changes td{font-size:.85em} ul.refusals li{margin:4px 0}
.kv th{width:190px} .cols{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:16px}
"""


def _batch_keys(report: Report) -> list[str]:
    keys: list[str] = []
    for c in [report.baseline, *report.candidates]:
        if c.metrics:
            keys += [k for k in c.metrics.latency_ms if k not in keys]
    return sorted(keys, key=int)


def _wins(c: Candidate, report: Report) -> list[str]:
    return [o for o, n in report.winners.items() if n == c.name] or (
        [report.objective] if c.name == report.best and not report.winners else [])


def _row(c: Candidate, report: Report, keys: list[str], is_baseline: bool = False) -> str:
    base, m = report.baseline, c.metrics
    # The badges get a line of their own under the name, wrapping inside the cell: beside a long
    # name they ran over the next column.
    wins = _wins(c, report)
    badges = ('<div class="badges">' + "".join(f'<span class="badge">best {escape(o)}</span>' for o in wins) + "</div>"
              if wins else "")
    link = f'<a href="#cand-{escape(c.name)}">{escape(c.name)}</a>' if not is_baseline else escape(c.name)
    cells = [f'<td class="l name">{link}{badges}</td>']
    if m is None:
        cells.append(f'<td class="l err" colspan="{6 + len(keys)}">{escape(c.status)}: {escape(c.error or "")}</td>')
    else:
        drop = (base.metrics.accuracy - m.accuracy) * 100 if base.metrics else 0.0
        ratio = base.metrics.size_bytes / m.size_bytes if base.metrics and m.size_bytes else None
        cells += [f"<td>{m.accuracy * 100:.2f}</td>", f"<td>{drop:+.2f}</td>",
                  f"<td>{_fmt_bytes(m.size_bytes)}{f' ({ratio:.1f}x)' if ratio and not is_baseline else ''}</td>"]
        for k in keys:
            lat, speed = m.latency_ms.get(k), speedup(c, base, k)
            extra = f" ({speed:.1f}x)" if speed and not is_baseline else ""
            cells.append(f"<td>{lat.p50:.3f}{extra}</td>" if lat else "<td>-</td>")
        cold = f"{m.cold_start_ms:,.0f}" if m.cold_start_ms is not None else "-"
        cells += [f"<td>{m.throughput_per_s:,.0f}</td>", f"<td>{cold}</td>", f'<td class="l">{escape(m.runtime)}</td>']
    within = "-" if is_baseline else ('<span class="yes">yes</span>' if c.within_budget else '<span class="no">no</span>')
    cells.append(f"<td>{within}</td>")
    classes = " ".join(x for x in ["best" if c.name == report.best else "", c.status, "baseline" if is_baseline else ""] if x)
    return f'<tr class="{classes}" data-name="{escape(c.name)}">' + "".join(cells) + "</tr>"


def _candidate_table(report: Report) -> str:
    keys = _batch_keys(report)
    metric = "fidelity" if report.metric == "fidelity" else "accuracy"
    head = ['<th class="l">candidate</th>', f"<th>{metric} %</th>", "<th>drop (pts)</th>", "<th>size (smaller)</th>"]
    head += [f"<th>p50 ms, batch {k} (faster)</th>" for k in keys]
    head += ["<th>samples/s</th>", '<th title="load the artifact and run its first call">cold start ms</th>',
             '<th class="l">runtime</th>', "<th>within budget</th>"]
    rows = [_row(report.baseline, report, keys, is_baseline=True)] + [_row(c, report, keys) for c in report.candidates]
    return ('<table id="candidates"><thead><tr>' + "".join(head) + "</tr></thead><tbody>" + "".join(rows) +
            '</tbody></table><p class="hint">Click a name for its steps, artifact, how to load it, and its notes. '
            "p50 = median latency; speed-ups and size ratios are against the baseline; cold start = loading the "
            "artifact and running its first call in a fresh process.</p>")


def _kv_table(pairs: list[tuple[str, object]], table_id: str) -> str:
    rows = "".join(f'<tr><th class="l">{escape(str(k))}</th><td class="l">{escape(str(v))}</td></tr>' for k, v in pairs)
    return f'<table class="kv" id="{table_id}">{rows}</table>'


def _headline(report: Report) -> str:
    best = report.candidate(report.best) if report.best else None
    budget = report.budget.get("max_accuracy_drop")
    if best is None or best.metrics is None or report.baseline.metrics is None:
        return ('<p class="headline none" id="summary">No candidate stayed within the accuracy budget of '
                f'{budget} points{" and the constraints" if report.constraints else ""}; the baseline remains '
                "the best model.</p>")
    return (f'<p class="headline" id="summary">Ship <b>{escape(best.name)}</b>: {escape(in_words(best, report))} '
            f"<span class=\"hint\">(best for {escape(report.objective)}: {escape(OBJECTIVE_WORDS[report.objective])}, "
            f"within {budget} points; <a href=\"#cand-{escape(best.name)}\">how to load it</a>)</span></p>")


def _cards(report: Report) -> str:
    cards = []
    for objective, name in report.winners.items():
        c = report.candidate(name) if name else None
        chosen = " chosen" if objective == report.objective else ""
        title = f"{escape(objective)}{' (chosen)' if chosen else ''}: {escape(OBJECTIVE_WORDS.get(objective, ''))}"
        if c is None:
            cards.append(f'<div class="card{chosen}" data-objective="{escape(objective)}"><h3>{title}</h3>'
                         '<p class="name">none</p><p>no candidate is eligible</p></div>')
            continue
        path = artifact_path(c, report)
        cards.append(f'<div class="card{chosen}" data-objective="{escape(objective)}"><h3>{title}</h3>'
                     f'<p class="name"><a href="#cand-{escape(c.name)}">{escape(c.name)}</a></p><p>{escape(in_words(c, report))}</p>'
                     f"<p><code>{escape(path or '-')}</code></p></div>")
    return f'<div class="cards" id="winners">{"".join(cards)}</div>' if cards else ""


def _runoff(report: Report) -> str:
    """The contenders re-timed side by side before the pick, as a small table."""
    r = report.runoff
    if r is None:
        return ""
    rows = "".join(
        f"<tr><td>{escape(e.name)}</td><td>{'-' if e.measured_ms is None else f'{e.measured_ms:.3f}'}</td>"
        f"<td>{'not timed: ' + escape(e.error or '') if e.p50_ms is None else f'{e.p50_ms:.3f}'}</td>"
        f"<td>{e.runs}</td></tr>" for e in r.entries)
    verdict = (f"kept <b>{escape(r.picked)}</b>" if r.picked == r.before else
               f"picked <b>{escape(r.picked)}</b> (the sequential measurements had picked {escape(r.before)})")
    return (f'<div id="runoff"><p>Runoff: the close contenders for {escape(r.objective)} timed again side by side, '
            f"interleaved in one process, at batch {r.batch_size}; {verdict}.</p><table class=\"runoff\"><tr>"
            "<th>candidate</th><th>p50 ms, own measurement</th><th>p50 ms, side by side</th><th>calls</th></tr>"
            f"{rows}</table></div>")


def _charts(report: Report) -> list[str]:
    parts = ['<h2>Trade-offs</h2><div class="charts" id="plots">']
    for axis, caption in (("latency", "accuracy vs latency"), ("size", "accuracy vs size on disk")):
        svg = pareto_svg(report, axis)
        if svg:
            parts.append(f'<figure class="plot" id="plot-{axis}">{svg}<figcaption>{caption}: up and to the left is '
                         "better. Green = within the accuracy budget, grey = outside it, dashed red = the budget line, "
                         "black square = the baseline, star = the chosen candidate, gold ring = another objective's "
                         "winner; the green steps join the points nothing beats on both axes.</figcaption></figure>")
    parts.append("</div>")
    return parts


def _baseline_table(report: Report) -> str:
    b = report.baseline.metrics
    if b is None:
        return ""
    lat = "; ".join(f"batch {k}: p50 {v.p50:.3f} ms, p95 {v.p95:.3f} ms, cv {v.cv:.2f}"
                    for k, v in sorted(b.latency_ms.items(), key=lambda kv: int(kv[0])))
    return _kv_table([(report.metric, f"{b.accuracy * 100:.2f} %"), ("size on disk", f"{b.size_bytes:,} B"),
                      ("params", f"{b.params:,}"), ("MACs", f"{b.macs:,}" if b.macs is not None else "n/a"),
                      ("latency", lat), ("throughput", f"{b.throughput_per_s:,.0f} samples/s"),
                      ("peak memory", f"{b.peak_memory_bytes / 2**20:.1f} MiB"), ("runtime", b.runtime)], "baseline")


def render_html(report: Report) -> str:
    """The whole page as one string."""
    env = report.environment
    limits = "".join(f", {k.replace('_', ' ')} {v}" for k, v in report.constraints.items())
    parts = [
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>torchslim report: {escape(report.model)}</title><style>{_CSS}</style></head><body>",
        f"<h1>torchslim report: {escape(report.model)} on {escape(report.data)}</h1>",
        f'<p class="meta">recipe <b>{escape(str(report.recipe or "-"))}</b> · objective <b>{escape(report.objective)}</b> · '
        f"budget {report.budget.get('max_accuracy_drop')} points{escape(limits)} · {escape(report.metric)} on the held-out "
        f"split · created {escape(report.created)} · torchslim {escape(report.torchslim_version)}</p>",
        _headline(report), _cards(report), _runoff(report), *_charts(report),
        "<h2>Candidates</h2>", _candidate_table(report), totals_html(report), refusals_html(report),
        '<h2>Each candidate</h2><div id="details">',
        *[candidate_details(c, report) for c in report.candidates], "</div>",
    ]
    sens = sensitivity_svg(report)
    if sens:
        parts.append('<h2>Per-layer sensitivity</h2><figure class="plot" id="plot-sensitivity">' + sens +
                     "<figcaption>validation split; not used for any reported metric</figcaption></figure>")
    parts += ['<h2>Baseline and environment</h2><div class="cols"><div>', _baseline_table(report),
              "</div><div>", _kv_table([(k, env[k]) for k in env], "environment"), "</div></div>"]
    parts.append(execution_html(report.baseline))
    baseline_notes = report.baseline.note_texts()
    if baseline_notes:
        parts.append('<ul class="notes" id="baseline-notes">' + "".join(f"<li>baseline: {escape(n)}</li>" for n in baseline_notes) + "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)
