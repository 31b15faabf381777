"""Where training numbers go: a JSON-lines log, TensorBoard (when importable) and a progress bar.

Only rank 0 writes (the caller passes ``enabled=False`` elsewhere). The JSON-lines file is
flushed line by line, so a killed run keeps every line it logged; a fresh run starts it anew and
a resumed run appends (lines carry their global step, so lines repeated after a resume from a
mid-epoch checkpoint are recognisable).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


class MetricsLogger:
    def __init__(self, out_dir: Path | None, *, enabled: bool = True, append: bool = False, log: Callable[[str], None] | None = None, progress: bool | None = None) -> None:
        self.enabled = enabled
        self.log = log
        self._jsonl = None
        self._tb = None
        self._progress = None
        self._task = None
        if not enabled:
            return
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            self._jsonl = open(out_dir / "metrics.jsonl", "a" if append else "w", encoding="utf-8")  # noqa: SIM115 (closed in close())
            try:
                from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package
            except ImportError:
                pass
            else:
                self._tb = SummaryWriter(str(out_dir / "tensorboard"))
        if progress is None:
            progress = sys.stderr.isatty()
        if progress:
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[status]}"), TimeRemainingColumn(), transient=False)
            self._progress.start()

    def start_epoch(self, epoch: int, epochs: int, steps: int, done: int = 0) -> None:
        if self._progress is not None:
            if self._task is not None:
                self._progress.remove_task(self._task)
            self._task = self._progress.add_task(f"epoch {epoch}/{epochs}", total=steps, completed=done, status="")

    def advance(self, status: dict[str, Any]) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, advance=1, status=_format(status))

    def write(self, record: dict[str, Any], *, echo: bool = False) -> None:
        if not self.enabled:
            return
        if self._jsonl is not None:
            self._jsonl.write(json.dumps(record) + "\n")
            self._jsonl.flush()
        if self._tb is not None:
            step = record.get("step", 0)
            for key, value in record.items():
                if key not in ("step", "epoch", "kind") and isinstance(value, (int, float)):
                    self._tb.add_scalar(f"{record.get('kind', 'train')}/{key}", value, step)
        if echo and self.log is not None:
            self.log(_format(record))

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
        if self._jsonl is not None:
            self._jsonl.close()
        if self._tb is not None:
            self._tb.close()


def _format(record: dict[str, Any]) -> str:
    parts = []
    for key, value in record.items():
        if key == "kind":
            continue
        if isinstance(value, float):
            parts.append(f"{key} {value:.4g}")
        else:
            parts.append(f"{key} {value}")
    return "  ".join(parts)
