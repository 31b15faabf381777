"""The registries: one shape for techniques, one for runtimes and the writers of their formats.

A registry lives here, in the bottom layer, and is filled by the layer that owns the thing
registered (each technique package registers itself when it is imported; ``torchslim``
imports them all), so the pipeline finds a technique and ``load`` finds a runtime without
importing upward. Adding a technique is one package plus one ``TECHNIQUES.register`` line;
adding a runtime for an existing format is one module plus one ``RUNTIMES.register`` line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from torchslim.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Names -> entries, with an error that lists the known names."""

    def __init__(self, kind: str, hint: str = "") -> None:
        self.kind, self.hint = kind, hint
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T, *, replace: bool = False) -> T:
        if name in self._entries and not replace:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    def get(self, name: str) -> T:
        if name not in self._entries:
            plugins = f" {PLUGIN_ERRORS[-1]}" if PLUGIN_ERRORS else ""
            raise ConfigError(f"Unknown {self.kind} {name!r}. Known {self.kind}s: {', '.join(self._entries)}.{self.hint}"
                              f"{plugins}")
        return self._entries[name]

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)


@dataclass(frozen=True)
class Technique:
    """A recipe step: ``validate(options) -> config`` when the recipe loads (ConfigError naming
    the bad field), ``run(model, config, ctx: StepContext) -> StepOutput`` when the candidate runs."""

    name: str
    validate: Callable[[Any], Any]
    run: Callable[..., Any]
    summary: str = ""


@dataclass(frozen=True)
class RuntimeEntry:
    """A runtime: the artifact formats it loads and a factory for the object whose
    ``load(path, manifest, device=...)`` returns a callable model (built lazily, so an
    optional backend costs nothing until it is used)."""

    name: str
    formats: tuple[str, ...]
    factory: Callable[[], Any]


# writer(model, folder, example_inputs, *, task, input_names) -> the artifact path it wrote
Writer = Callable[..., Path]

TECHNIQUES: Registry[Technique] = Registry(
    "step", " Each step is a one-key mapping such as {prune: {method: channel, ratio: 0.5}}.")
RUNTIMES: Registry[RuntimeEntry] = Registry("runtime")
WRITERS: Registry[Writer] = Registry("runtime", " (no writer makes artifacts for it)")


PLUGIN_ERRORS: list[str] = []  # why a module named in TORCHSLIM_PLUGINS did not import


def load_plugins() -> None:
    """Import the modules named in TORCHSLIM_PLUGINS (comma-separated): a plug-in registers its
    techniques, runtimes and writers here when imported, in this process (``import torchslim``
    calls this) and in the processes measurement forks (the memory probe)."""
    import importlib
    import os

    for name in filter(None, (n.strip() for n in os.environ.get("TORCHSLIM_PLUGINS", "").split(","))):
        try:
            importlib.import_module(name)
        except ImportError as e:
            PLUGIN_ERRORS.append(f"TORCHSLIM_PLUGINS names {name!r}, which does not import ({e}). "
                                 "Fix the module name or unset TORCHSLIM_PLUGINS.")
            raise ConfigError(PLUGIN_ERRORS[-1]) from None
