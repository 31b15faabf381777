"""Where a search's candidates run: ``local`` (this process, one after another: the default)
or ``ray`` (built in parallel on a Ray cluster, timed alone on the target: ``pipeline._ray``).

An executor has ``parallel`` (False: ``_optimize`` keeps its sequential loop and progress
bar), ``run(plan, setup, label) -> Candidate``, and for a parallel one ``run_all(calls)``,
``measure_baseline(...)`` and ``finish(report)``.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

from torchslim.errors import ConfigError
from torchslim.pipeline._recipe import PlannedCandidate
from torchslim.pipeline._search import SearchSetup, run_candidate
from torchslim.report import Candidate

EXECUTORS = ("local", "ray")


class LocalExecutor:
    """Today's behaviour: every candidate in this process, one after another."""

    parallel = False

    def run(self, plan: PlannedCandidate, setup: SearchSetup, label: str) -> Candidate:
        return run_candidate(plan, setup, label)


def resolve_executor(given: str | None, from_recipe: str | None) -> str:
    """``--executor`` over the recipe's ``executor`` over ``local``; ray checked importable (exit 2 if not)."""
    name = given if given not in (None, "") else (from_recipe or "local")
    if name not in EXECUTORS:
        raise ConfigError(f"--executor {name!r}: use one of {', '.join(EXECUTORS)}.")
    if name == "ray":
        from torchslim.pipeline._ray import import_ray

        import_ray()
    return name


def open_executor(name: str, *, address: str | None, model_spec: str | None) -> AbstractContextManager:
    """A context manager giving the executor; ray joins (or starts) the cluster and leaves it on exit."""
    if name == "ray":
        from torchslim.pipeline._ray import RayExecutor

        return RayExecutor(address=address, model_spec=model_spec)
    if address:
        raise ConfigError("--ray-address is only used with --executor ray.")
    return nullcontext(LocalExecutor())
