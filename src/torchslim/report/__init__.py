"""report.json (SPEC.md section 5): typed model, JSON Schema validation, atomic writing,
and renderers (terminal table; HTML with plots)."""

from __future__ import annotations

from torchslim.report._execution import totals_line
from torchslim.report._html import render_html
from torchslim.report._model import (
    Candidate,
    Execution,
    FallbackRecord,
    LayerChangeRecord,
    Refusal,
    Report,
    Runoff,
    RunoffEntry,
    environment,
)
from torchslim.report._runtime import RuntimeRecord, SettingsTry, SettingsTuning
from torchslim.report._table import render_table
from torchslim.report._write import load_report, validate_report, write_report

__all__ = [
    "Candidate",
    "Execution",
    "FallbackRecord",
    "LayerChangeRecord",
    "Refusal",
    "Report",
    "Runoff",
    "RunoffEntry",
    "RuntimeRecord",
    "SettingsTry",
    "SettingsTuning",
    "environment",
    "load_report",
    "render_html",
    "render_table",
    "totals_line",
    "validate_report",
    "write_report",
]
