"""The one results format: a JSON envelope per benchmark, written atomically.

    {"benchmark": NAME, "date": ISO-8601 UTC, "environment": {...}, "parameters": {...}, "results": ...}

A benchmark that keeps several runs in one file (``variants=True``, e.g. minilm_prune) keys
``environment``, ``parameters`` and ``results`` alike by variant name.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from benchmarks._harness._environment import now, uptime

BEFORE_THE_HARNESS = "recorded before the harness: only what the results themselves say is known"


class Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid")

    benchmark: str
    date: str
    environment: dict[str, Any]
    parameters: dict[str, Any]
    results: Any


def write_envelope(envelope: Envelope, path: Path) -> Path:
    """Write next to ``path`` then rename over it: a run killed mid-write leaves the old file whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(envelope.model_dump(), indent=2) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_envelope(path: Path) -> Envelope:
    return Envelope.model_validate_json(Path(path).read_text())


def wrap_unenveloped(path: Path, benchmark: str) -> Envelope:
    """Rewrite a results file written before the harness (a bare JSON object or list) as an
    envelope, numbers untouched: ``results`` is the old content, ``environment`` says it was
    recorded before the harness and names the commit that last wrote the file (its date is the
    envelope's; now when git does not know the file), ``parameters`` is empty."""
    path = Path(path)
    content = json.loads(path.read_text())
    try:
        commit, date = subprocess.run(["git", "log", "-1", "--format=%H %cI", "--", path.name], cwd=path.parent,
                                      capture_output=True, text=True, check=True, timeout=10).stdout.split()
    except (OSError, ValueError, subprocess.SubprocessError):  # not in git (yet)
        commit, date = None, now()
    environment = {"note": BEFORE_THE_HARNESS, "git_commit": commit,
                   "date_is": "the date of the commit that recorded this file" if commit else "when it was wrapped"}
    envelope = Envelope(benchmark=benchmark, date=date, environment=environment, parameters={}, results=content)
    write_envelope(envelope, path)
    return envelope


class Context:
    """Handed to a benchmark's run function: where its results go, and ``save`` to write them
    (call it after every round of a long run, so a killed run keeps what it measured)."""

    def __init__(self, name: str, out: Path, parameters: dict, environment: dict, variant: str | None = None) -> None:
        self.name, self.out, self.parameters, self.variant = name, Path(out), parameters, variant
        self.environment, self.date = environment, now()

    def save(self, results: Any) -> Path:
        import torch  # threads at save time: several benchmarks set them in their run function

        environment = self.environment | {"uptime_after": uptime(), "torch_threads": torch.get_num_threads()}
        envelope = Envelope(benchmark=self.name, date=self.date, environment=environment,
                            parameters=self.parameters, results=results)
        if self.variant is not None:
            envelope = self._merged(envelope)
        return write_envelope(envelope, self.out)

    def _merged(self, run: Envelope) -> Envelope:
        """This run under its variant key, every other variant of the file kept as it was."""
        old = read_envelope(self.out) if self.out.exists() else Envelope(
            benchmark=self.name, date=run.date, environment={}, parameters={}, results={})
        if old.benchmark != self.name or not isinstance(old.results, dict):
            raise ValueError(f"{self.out} is not a {self.name} results file keyed by variant; pass another --out")
        return Envelope(benchmark=self.name, date=run.date,
                        environment=old.environment | {self.variant: run.environment},
                        parameters=old.parameters | {self.variant: run.parameters},
                        results=old.results | {self.variant: run.results})
