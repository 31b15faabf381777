"""The table of recipe steps: a step name -> the technique that runs it.

Entries are resolved lazily (a recipe that only quantizes never imports the pruning
backend). An entry is one of:

    "package.module"                                   exposes validate_step / run_step
    ("package.module", "validate_name", "run_name")    other function names in that module
    an object with ``validate_step`` and ``run_step``   (tests inject fake steps this way)
    (validate_callable, run_callable)

The table is a plain mapping passed to ``load_recipe`` / ``optimize`` (``step_table=``), so
adding a technique means one line here, and tests swap in fakes without monkeypatching.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torchslim.errors import ConfigError

STEP_TABLE: dict[str, Any] = {
    "quantize": "torchslim.quantize",
    "prune": "torchslim.prune",
    "distill": "torchslim.distill",
    "factorize": "torchslim.factorize",
    "share": "torchslim.share",
    "encode": ("torchslim.share", "validate_encode_step", "run_encode_step"),
    "export": "torchslim.export",
    "finetune": "torchslim.train",
}


@dataclass(frozen=True)
class Step:
    """A resolved step: the technique's two contract functions."""

    name: str
    validate: Callable[[Any], Any]
    run: Callable[..., Any]


def known_steps(table: Mapping[str, Any] | None = None) -> list[str]:
    return list(table if table is not None else STEP_TABLE)


def resolve_step(name: str, table: Mapping[str, Any] | None = None) -> Step:
    """Look ``name`` up in ``table`` (default ``STEP_TABLE``) and import what it names."""
    table = STEP_TABLE if table is None else table
    if name not in table:
        raise ConfigError(
            f"Unknown step {name!r}. Known steps: {', '.join(sorted(table))}. "
            "Each step is a one-key mapping such as {prune: {method: channel, ratio: 0.5}}."
        )
    entry = table[name]
    if isinstance(entry, str):
        entry = (entry, "validate_step", "run_step")
    if isinstance(entry, tuple) and len(entry) == 2 and all(callable(f) for f in entry):
        return Step(name, entry[0], entry[1])
    if isinstance(entry, tuple) and len(entry) == 3 and all(isinstance(p, str) for p in entry):
        module_name, validate_name, run_name = entry
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name and e.name.startswith("torchslim"):
                raise ConfigError(f"Step {name!r} is not available in this build of torchslim ({e.name} is missing).") from None
            raise
        validate, run = getattr(module, validate_name, None), getattr(module, run_name, None)
        if validate is None or run is None:
            raise ConfigError(
                f"Step {name!r} is not available in this build of torchslim: {module_name} does not "
                f"expose {validate_name}() and {run_name}(). Remove the step from the recipe."
            )
        return Step(name, validate, run)
    validate, run = getattr(entry, "validate_step", None), getattr(entry, "run_step", None)
    if callable(validate) and callable(run):
        return Step(name, validate, run)
    raise TypeError(f"step table entry for {name!r} is not a module name, a (validate, run) pair or a step object")
