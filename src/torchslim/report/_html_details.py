"""One folded section per candidate in report.html: its steps, its artifact, a snippet that
loads it (and, for ONNX, one that needs only onnxruntime), its measurements and its notes,
grouped by kind and each said once. The chosen winner's section is open."""

from __future__ import annotations

from html import escape

from torchslim.core.notes import NOTE_KINDS
from torchslim.report._changes import changes_html
from torchslim.report._execution import execution_html
from torchslim.report._html_runtime import runtime_section
from torchslim.report._model import Candidate, Report
from torchslim.report._words import artifact_path, in_words, is_onnx, load_snippet, onnx_snippet

_KIND_TITLES = {
    "warning": "warnings",
    "busy_machine": "measured on a busy machine",
    "no_speedup": "no gain: slower than the baseline",
    "not_smaller": "no gain: not smaller than the baseline",
    "technique": "what the technique did",
}
_ORDER = ["warning", "busy_machine", "no_speedup", "not_smaller", "technique"]
_ORDER += [k for k in NOTE_KINDS if k not in _ORDER]


def _notes(c: Candidate) -> str:
    groups = [(kind, list(dict.fromkeys(c.note_texts(kind)))) for kind in _ORDER]
    groups = [(k, texts) for k, texts in groups if texts]
    if not groups:
        return ""
    count = sum(len(t) for _, t in groups)
    summary = ", ".join(f"{len(t)} {_KIND_TITLES.get(k, k).split(':')[0]}" for k, t in groups)
    body = "".join(f'<h4>{escape(_KIND_TITLES.get(k, k))}</h4><ul class="notes {escape(k)}">'
                   + "".join(f"<li>{escape(t)}</li>" for t in texts) + "</ul>" for k, texts in groups)
    open_attr = " open" if any(k in ("warning", "busy_machine") for k, _ in groups) else ""
    return (f'<details class="notes"{open_attr}><summary>{count} note{"s" if count > 1 else ""} ({escape(summary)})'
            f"</summary>{body}</details>")


def _measurements(c: Candidate) -> str:
    m = c.metrics
    if m is None:
        return ""
    rows = [f"batch {k}: p50 {v.p50:.3f} ms, p95 {v.p95:.3f} ms, cv {v.cv:.2f}"
            for k, v in sorted(m.latency_ms.items(), key=lambda kv: int(kv[0]))]
    rows += [f"throughput {m.throughput_per_s:,.0f} samples/s", f"peak memory {m.peak_memory_bytes / 2**20:.1f} MiB",
             f"{m.size_bytes:,} bytes on disk", f"{m.params:,} params" + (f", {m.macs:,} MACs" if m.macs is not None else "")]
    cold = getattr(m, "cold_start_ms", None)  # newer reports: load + first call
    if cold is not None:
        rows.append(f"cold start {cold:.1f} ms (load and first call)")
    workload = getattr(m, "workload", None)
    if workload:
        rows.append(f"{workload.sentences} held-out sentences (mean {workload.mean_tokens:g} tokens): "
                    f"{workload.batched_s:.3f} s in batches of {workload.batch_size}, "
                    f"{workload.one_by_one_s:.3f} s one by one")
    if c.duration_s is not None:
        rows.append(f"took {c.duration_s:.1f} s to make and measure")
    return "<p>" + " · ".join(escape(str(r)) for r in rows) + "</p>"


def _fallback(c: Candidate) -> str:
    """The layers accuracy-aware fallback kept in float, and the metric before and after each try."""
    f = c.fallback
    if f is None:
        return ""
    kept = ", ".join(f.kept_in_float) or "none: every layer stays int8"
    rows = "".join(f"<tr><td><code>{escape(s.layer)}</code></td><td>{s.metric_before:.4f}</td><td>{s.metric_after:.4f}</td>"
                   f"<td>{'kept in float' if s.kept else 'no gain, back to int8'}</td></tr>" for s in f.steps)
    tries = ("<table class=\"fallback\"><thead><tr><th>layer tried in float</th><th>before</th><th>after</th>"
             f"<th>decision</th></tr></thead><tbody>{rows}</tbody></table>") if rows else ""
    end = "within" if f.within_target else "not within"
    return (f'<p class="fallback">fallback: float {escape(f.metric)} {f.reference:.4f}, all int8 {f.quantized:.4f}, '
            f"final {f.final:.4f} ({end} its {f.target_drop:g}-point target). Kept in float: {escape(kept)}</p>{tries}")


def _use(c: Candidate, report: Report) -> str:
    if c.status != "ok" or not c.artifact:
        return ""
    parts = [f'<p>artifact: <code class="artifact">{escape(artifact_path(c, report) or "")}</code> '
             '<span class="hint">(a manifest beside it records its runtime and inputs)</span></p>',
             f'<pre class="snippet torchslim"><code>{escape(load_snippet(c, report))}</code></pre>']
    if is_onnx(c):
        parts.append('<p class="hint">or with onnxruntime alone (no torchslim, no torch):</p>'
                     f'<pre class="snippet onnxruntime"><code>{escape(onnx_snippet(c, report))}</code></pre>')
    return "".join(parts)


def candidate_details(c: Candidate, report: Report) -> str:
    wins = [o for o, n in report.winners.items() if n == c.name]
    badges = "".join(f' <span class="badge">best {escape(o)}</span>' for o in wins)
    budget = "" if c.status != "ok" else (" · within budget" if c.within_budget else " · outside the budget")
    steps = "".join(f"<li>{escape(s)}</li>" for s in c.steps) or "<li>(no steps)</li>"
    refined = f"<p>a second-stage variant of {escape(c.refined_from)}</p>" if c.refined_from else ""
    error = f'<p class="no">{escape(c.status)}: {escape(c.error)}</p>' if c.error else ""
    open_attr = " open" if c.name == report.best else ""
    return (f'<details class="candidate {escape(c.status)}" id="cand-{escape(c.name)}"{open_attr}>'
            f'<summary>{escape(c.name)}{badges} <span class="sub">— {escape(in_words(c, report))}{budget}</span></summary>'
            f'{error}{refined}<p>steps:</p><ol class="steps">{steps}</ol>{_use(c, report)}{_measurements(c)}{execution_html(c)}'
            f'{runtime_section(c.runtime_settings)}{changes_html(c)}{_fallback(c)}{_notes(c)}'
            "</details>")
