"""Where a search's candidates run: ``local`` (this process, one after another: the default)
or ``ray`` (built in parallel on a Ray cluster, timed alone on the target: ``pipeline._ray``).

An executor has ``parallel`` (False: ``_optimize`` keeps its sequential loop and progress
bar), ``run(plan, setup, label) -> Candidate``, and for a parallel one ``run_all(calls)``,
``measure_baseline(...)`` and ``finish(report)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from torchslim.core.log import say
from torchslim.errors import ConfigError
from torchslim.pipeline._edge import _search_family, _start, choose_families
from torchslim.pipeline._recipe import PlannedCandidate, SearchSpec
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


def search_in_parallel(executor, spec: SearchSpec, results: list[Candidate], plans: Mapping[str, PlannedCandidate],
                       sensitivity: dict | None, step_table: Mapping[str, Any] | None, objective: str, baseline,
                       budget: float, run_one: Callable[[PlannedCandidate, str], Candidate],
                       refused: Callable | None = None) -> list[Candidate]:
    """``pipeline._edge.search_stage`` with its families side by side on a parallel executor (the
    tries within a family stay one after another: each bisection step needs the last result)."""
    families = choose_families(spec, results, plans, objective, baseline, budget)
    if not families:
        say("search: every family is within budget at the recipe's strength (or has nothing to tune)")
        return []
    say(f"search: retrying {', '.join(families)} at other strengths, the families in parallel "
        f"(at most {spec.max_tries} tries each)")
    taken = {c.name for c in results} | set(plans)
    by_name = {c.name: c for c in results}
    starts = [_start(spec, plans[name], by_name[name], sensitivity, push=objective == "size") for name in families]
    done = executor.run_all([(_search_family, fam, spec, sensitivity, step_table, taken, run_one, refused) for fam in starts])
    return [t for tries in done for t in tries]
