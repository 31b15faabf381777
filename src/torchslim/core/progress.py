"""Where a run of candidates stands, for the person waiting on it.

On a terminal: one live line under the scrolling log (rich), saying candidate i/N, its current
step and an estimate of the time left. Off a terminal (a pipe, nohup, a cluster job) nothing is
redrawn: ``say`` prints each message as one plain, flushed line (``torchslim.core.log``), and each
finished candidate adds one line with the estimate. The estimate is the mean wall time of the
candidates finished so far times those still to run, capped by what is left of a time budget;
it is a guess, so it is shown rounded ("about 3 min left").
"""

from __future__ import annotations

import sys
import time

from torchslim.core import log as _log


def _fmt_left(seconds: float) -> str:
    if seconds < 60:
        return f"about {max(seconds, 1):.0f} s left"
    if seconds < 3600:
        return f"about {seconds / 60:.0f} min left"
    return f"about {seconds / 3600:.1f} h left"


class CandidateProgress:
    """``with CandidateProgress(n) as p: p.start(i, name) ... p.finish()`` around a loop of
    candidates. ``durations`` (shared, seconds per finished candidate) may hold earlier ones;
    ``started``/``time_budget`` (seconds) cap the estimate at the budget that is left."""

    def __init__(self, total: int, *, prefix: str = "", durations: list[float] | None = None,
                 started: float | None = None, time_budget: float | None = None, live: bool | None = None) -> None:
        self.total, self.prefix = total, prefix
        self.durations = durations if durations is not None else []
        self.started, self.time_budget = started, time_budget
        self.live = sys.stderr.isatty() if live is None else live
        self.index, self.name, self.step = 0, "", ""
        self._candidate_started = time.perf_counter()
        self._progress = self._task = None

    def seconds_left(self) -> float | None:
        """The estimate, or None before any candidate has finished."""
        if not self.durations:
            return None
        mean = sum(self.durations) / len(self.durations)
        running = time.perf_counter() - self._candidate_started if self.index else 0.0
        remaining = self.total - max(self.index - 1, 0)
        left = max(mean * remaining - running, 0.0)
        if self.time_budget is not None and self.started is not None:
            left = min(left, max(self.time_budget - (time.perf_counter() - self.started), 0.0))
        return left

    def left_text(self) -> str:
        left = self.seconds_left()
        return "estimating the time left" if left is None else _fmt_left(left)

    def __enter__(self) -> CandidateProgress:
        if self.live and self.total:
            self._start_live()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()
            _log.set_display(None)

    def _start_live(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            ProgressColumn,
            SpinnerColumn,
            TextColumn,
        )
        from rich.text import Text

        owner = self

        class _Left(ProgressColumn):
            def render(self, task) -> Text:
                return Text(owner.left_text(), style="cyan")

        self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(bar_width=20),
                                  MofNCompleteColumn(), TextColumn("{task.fields[step]}", style="dim"), _Left(),
                                  console=Console(stderr=True, log_path=False), transient=True)
        self._task = self._progress.add_task(f"{self.prefix}candidates", total=self.total, step="")
        self._progress.start()
        _log.set_display(self)

    def start(self, index: int, name: str) -> None:
        self.index, self.name, self.step = index, name, "starting"
        self._candidate_started = time.perf_counter()
        self._update(f"{self.prefix}candidate {index}/{self.total} {name}")

    def finish(self) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=self.index)
        elif self.index < self.total and self.durations:
            _log.say(f"{self.prefix}[{self.index}/{self.total}] done; {self.left_text()}")

    def say(self, msg: str) -> None:
        """A message while the live line is shown: printed above it; the current step when it
        is about the running candidate."""
        head = f"{self.name}: "
        if self.name and head in msg:
            self.step = msg.split(head, 1)[1]
            self._update()
        self._progress.console.log(msg, markup=False, highlight=False)

    def _update(self, description: str | None = None) -> None:
        if self._progress is None:
            return
        fields = {"step": self.step[:60]}
        if description is not None:
            fields["description"] = description
        self._progress.update(self._task, **fields)
