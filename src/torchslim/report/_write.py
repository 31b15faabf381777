from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path

import jsonschema

from torchslim.core.files import atomic_write_text
from torchslim.errors import ArtifactError
from torchslim.report._model import Report


@cache
def schema() -> dict:
    return json.loads(resources.files("torchslim.report").joinpath("report.schema.json").read_text())


def validate_report(data: dict) -> None:
    """Raise ``jsonschema.ValidationError`` when ``data`` breaks the report schema."""
    jsonschema.validate(data, schema())


def write_report(report: Report, run_dir: str | Path) -> Path:
    """Validate, then write ``run_dir/report.json`` atomically."""
    data = json.loads(report.model_dump_json())
    validate_report(data)
    return atomic_write_text(Path(run_dir) / "report.json", json.dumps(data, indent=2))


def load_report(path: str | Path) -> Report:
    path = Path(path)
    if path.is_dir():
        path = path / "report.json"
    if not path.is_file():
        raise ArtifactError(f"No report at {str(path)!r}. Give a run directory written by 'torchslim optimize'.")
    try:
        data = json.loads(path.read_text())
        validate_report(data)
    except (ValueError, jsonschema.ValidationError) as e:
        msg = e.message if isinstance(e, jsonschema.ValidationError) else str(e)
        raise ArtifactError(f"{str(path)!r} is not a valid torchslim report: {msg}") from None
    return Report.model_validate(data)
