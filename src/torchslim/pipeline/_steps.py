"""Recipe steps: a step name -> the technique that runs it.

Techniques are entries of ``torchslim.core.registry.TECHNIQUES``; each technique package
registers itself (``TECHNIQUES.register(...)`` at the end of its ``__init__``), and importing
``torchslim`` imports them all. ``load_recipe`` takes ``step_table=`` (a mapping of names to
``Technique`` entries, objects with ``validate_step``/``run_step``, or ``(validate, run)``
pairs) to run fake steps in tests without registering them; ``optimize(model, data,
recipe=load_recipe(..., step_table=...))`` then runs them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torchslim.core.registry import TECHNIQUES, Technique
from torchslim.errors import ConfigError

# The registry itself, for code that wants the live table (``name in STEP_TABLE``).
STEP_TABLE = TECHNIQUES


@dataclass(frozen=True)
class Step:
    """A resolved step: the technique's two contract functions."""

    name: str
    validate: Callable[[Any], Any]
    run: Callable[..., Any]


def known_steps(table: Mapping[str, Any] | None = None) -> list[str]:
    return list(table) if table is not None else TECHNIQUES.names()


def resolve_step(name: str, table: Mapping[str, Any] | None = None) -> Step:
    """Look ``name`` up in ``table`` (default: the registered techniques)."""
    if table is None:
        entry: Any = TECHNIQUES.get(name)
    elif name in table:
        entry = table[name]
    else:
        raise ConfigError(
            f"Unknown step {name!r}. Known steps: {', '.join(sorted(table))}. "
            "Each step is a one-key mapping such as {prune: {method: channel, ratio: 0.5}}."
        )
    if isinstance(entry, Technique):
        return Step(name, entry.validate, entry.run)
    if isinstance(entry, tuple) and len(entry) == 2 and all(callable(f) for f in entry):
        return Step(name, entry[0], entry[1])
    validate, run = getattr(entry, "validate_step", None), getattr(entry, "run_step", None)
    if callable(validate) and callable(run):
        return Step(name, validate, run)
    raise TypeError(f"step table entry for {name!r} is not a Technique, a (validate, run) pair or a step object")
