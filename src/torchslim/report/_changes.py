"""What each technique did to the layers (``Candidate.changes``) and what was refused up
front (``Report.refusals``), in words: one line per candidate for the terminal, a folded
per-step table for the HTML, and the refusals said once."""

from __future__ import annotations

from html import escape

from torchslim.report._model import Candidate, Report

# The order and the words of the one-line summary ("pruned 8 layers, int8 12, 2 kept in float").
_WORDS = {
    "pruned": "pruned", "sparsified": "sparsified", "shared": "shared", "factorized": "factorized",
    "quantized": "int8", "kept_float": "kept in float", "cast": "cast to bf16/fp16", "replaced": "replaced",
    "removed": "removed", "converted": "rewritten", "summary": "and more",
}


def _counts(c: Candidate) -> dict[str, int]:
    layers: dict[str, set[str]] = {}
    for change in c.changes:
        if change.layer:
            layers.setdefault(change.kind, set()).add(change.layer)
    return {k: len(layers[k]) for k in _WORDS if k in layers} | {k: len(v) for k, v in layers.items() if k not in _WORDS}


def changes_summary(c: Candidate) -> str:
    """``pruned 8 layers, int8 12, kept in float 2``, then what concerns the whole model or file
    (``the onnx file stores 14 int8 weight tensors (...)``); empty when no step changed a layer."""
    counts = _counts(c)
    parts = [f"{_WORDS.get(k, k)} {n}" for k, n in counts.items()]
    if parts:
        parts[0] += " layer" if next(iter(counts.values())) == 1 else " layers"
    parts += list(dict.fromkeys(x.detail for x in c.changes if not x.layer))
    return ", ".join(parts)


def changes_html(c: Candidate) -> str:
    """A folded table of every layer change, grouped by step."""
    if not c.changes:
        return ""
    rows = "".join(f'<tr><td>{escape(x.step)}</td><td><code>{escape(x.layer or "(model)")}</code></td>'
                   f'<td>{escape(x.kind.replace("_", " "))}</td><td>{escape(x.detail)}</td></tr>' for x in c.changes)
    return (f'<details class="changes"><summary>what the steps did to the layers: {escape(changes_summary(c))}'
            '</summary><table class="changes"><thead><tr><th>step</th><th>layer</th><th>change</th><th>detail</th>'
            f"</tr></thead><tbody>{rows}</tbody></table></details>")


def refusal_lines(report: Report) -> list[str]:
    """Each refusal once: what refused which block, why, the way out, the candidates it skipped."""
    return [f"refused: {r.family} cannot handle {r.block}: {r.reason.rstrip('.')}. Way out: {r.way_out.rstrip('.')}. "
            f"Skipped: {', '.join(r.candidates)}." for r in report.refusals]


def refusals_html(report: Report) -> str:
    if not report.refusals:
        return ""
    items = "".join(f"<li><b>{escape(r.family)}</b> cannot handle <code>{escape(r.block)}</code>: {escape(r.reason)}"
                    f"<br>way out: {escape(r.way_out)}<br><span class=\"hint\">skipped without running: "
                    f"{escape(', '.join(r.candidates))}</span></li>" for r in report.refusals)
    return f'<h2>Refused up front</h2><ul class="refusals" id="refusals">{items}</ul>'
