"""What the cluster is doing, for the person waiting on ``--executor ray``.

Every running candidate (the node building or timing it, and its current step) and the
measure queue (built candidates waiting for the target). On a terminal: a live block under
the scrolling log (rich), redrawn as tasks report. Off a terminal nothing is redrawn: the same
summary is said as one line when it changed, at most every ``every_s`` seconds, so a log
shows the state of the cluster without a line per redraw.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass

from torchslim.core import log as _log


@dataclass
class _Running:
    node: str
    step: str
    measuring: bool = False


def _short(node: str | None) -> str:
    return (node or "?")[:8]


class RayProgress:
    """``building(name, node)``, ``step(name, node, text)``, ``measuring(name, node)``,
    ``done(name)``, ``queued(n)``; ``summary()`` is the state as text."""

    def __init__(self, *, live: bool | None = None, every_s: float = 5.0) -> None:
        self.live = sys.stderr.isatty() if live is None else live
        self.every_s = every_s
        self._running: dict[str, _Running] = {}
        self._queued = 0
        self._lock = threading.Lock()
        self._said, self._said_at = "", 0.0
        self._progress = self._task = None

    # -- state ---------------------------------------------------------------------------------
    def building(self, name: str, node: str) -> None:
        with self._lock:
            self._running[name] = _Running(node=node, step="building")
        self._show()

    def step(self, name: str, node: str, text: str) -> None:
        with self._lock:
            run = self._running.setdefault(name, _Running(node=node, step=text))
            run.node, run.step = node, text
        self._show()

    def measuring(self, name: str, node: str) -> None:
        with self._lock:
            self._running[name] = _Running(node=node, step="measuring", measuring=True)
        self._show()

    def done(self, name: str) -> None:
        with self._lock:
            self._running.pop(name, None)
        self._show()

    def queued(self, count: int) -> None:
        with self._lock:
            self._queued = count
        self._show()

    def tick(self) -> None:
        """Called every second or so: a change held back by ``every_s`` is said once it may be."""
        self._show()

    def summary(self) -> str:
        """``building 2: a [1a2b3c4d: step 1/2 prune(...)], b [5e6f7a8b: building]; measuring: c
        [9c0d1e2f]; 1 waiting to be timed``."""
        with self._lock:
            running = dict(self._running)
            queued = self._queued
        built = [f"{n} [{_short(r.node)}: {r.step[:60]}]" for n, r in running.items() if not r.measuring]
        timed = [f"{n} [{_short(r.node)}]" for n, r in running.items() if r.measuring]
        parts = [f"building {len(built)}: {', '.join(built)}" if built else "building nothing"]
        if timed:
            parts.append(f"measuring: {', '.join(timed)}")
        parts.append(f"{queued} waiting to be timed")
        return "; ".join(parts)

    # -- display -------------------------------------------------------------------------------
    def __enter__(self) -> RayProgress:
        if self.live:
            from rich.console import Console
            from rich.progress import Progress, SpinnerColumn, TextColumn

            self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"),
                                      console=Console(stderr=True, log_path=False), transient=True)
            self._task = self._progress.add_task("ray: starting")
            self._progress.start()
            _log.set_display(self)
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()
            _log.set_display(None)
            self._progress = None

    def say(self, msg: str) -> None:
        """A message while the live block is shown: printed above it."""
        self._progress.console.log(msg, markup=False, highlight=False)

    def _show(self) -> None:
        text = self.summary()
        if self._progress is not None:
            self._progress.update(self._task, description="ray: " + text.replace("; ", "\n      "))
            return
        now = time.monotonic()
        if text != self._said and now - self._said_at >= self.every_s:
            self._said, self._said_at = text, now
            _log.say(f"ray: now {text}")


def events_actor(ray, node_id: str):
    """A tiny actor on the driver's node that tasks tell where they run and which step they are
    on (the progress lines, and how many times a build started). Defined inside a function so
    cloudpickle sends it by value: its worker imports Ray only, not torch."""

    class RunEvents:
        def __init__(self) -> None:
            self.items: list = []
            self.begun: set = set()
            self.not_run = None  # why no build may start any more (the time budget is spent)

        def add(self, name: str, kind: str, node: str, text: str) -> None:
            import time as _time

            self.items.append((_time.time(), name, kind, node, text))

        def begin(self, name: str, node: str):
            """None: build (and the build is recorded as started); else why not. A build that
            began once may begin again (Ray retrying it after its node died)."""
            if self.not_run is not None and name not in self.begun:
                return self.not_run
            self.begun.add(name)
            self.add(name, "build", node, "building")
            return None

        def stop(self, reason: str) -> list:
            """No build starts from now on; the builds that began (one actor: no race)."""
            self.not_run = reason
            return sorted(self.begun)

        def drain(self) -> list:
            items, self.items = self.items, []
            return items

    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    strategy = NodeAffinitySchedulingStrategy(node_id, soft=False)
    return ray.remote(num_cpus=0)(RunEvents).options(scheduling_strategy=strategy).remote()
