"""report.html: a candidate's runtime settings and the table of its tuning tries."""

from __future__ import annotations

from html import escape
from typing import Any

from torchslim.report._runtime import RuntimeRecord


def _settings_text(settings: dict[str, Any]) -> str:
    return ", ".join(f"{k}={'auto' if v is None else v}" for k, v in settings.items() if k != "runtime")


def runtime_section(record: RuntimeRecord | None) -> str:
    """The settings the artifact runs with (source, effective precision) and, when tuned, every try."""
    if record is None:
        return ""
    where = {"default": "the default", "tuned": "chosen by measurement", "recipe": "fixed by the recipe"}[record.source]
    precision = (f"; runs at <b>{escape(record.effective_precision)}</b> (read back from the compiled model)"
                 if record.effective_precision else "")
    head = (f'<p class="runtime-settings">{escape(record.runtime)} settings ({where}): '
            f"<code>{escape(_settings_text(record.settings))}</code>{precision}</p>")
    t = record.tuning
    if t is None or not t.tries:
        return head
    rows = []
    for i, tr in enumerate(t.tries):
        ms = f"{tr.p50_ms:.3f}" if tr.p50_ms is not None else "—"
        what = "chosen" if tr.chosen else (escape(tr.error) if tr.error else "")
        changed = {k: v for k, v in tr.settings.items() if t.tries[0].settings.get(k) != v}
        label = "default" if i == 0 else escape(_settings_text(changed) or "default")
        cls = ' class="chosen"' if tr.chosen else ""
        rows.append(f"<tr{cls}><td><code>{label}</code></td><td>{ms}</td>"
                    f"<td>{tr.runs}</td><td>{what}</td></tr>")
    return (head + f'<table class="tuning"><caption>tuning ({escape(t.objective)}: p50 at batch {t.batch_size}; '
            f"at most {t.max_tries} tries in {t.max_seconds:g} s; a try must beat the default by {t.min_gain:.0%})"
            "</caption><thead><tr><th>settings</th><th>p50 ms</th><th>calls</th><th></th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")
