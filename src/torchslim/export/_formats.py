"""The formats registry: one entry per export format.

An entry names the runtime that runs the format's files, their suffix, the config classes of
its variants (``torchslim.export._config``) and its writer. The built-in formats are listed
at the end of ``_config.py``; a plug-in calls ``torchslim.export.register_format`` (which also
lets the search write that runtime's artifacts). ``export``, the recipe step and
``torchslim export`` find every format here. This module imports no other part of
``torchslim.export``: the configs and the verb import it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchslim.core.registry import Registry
from torchslim.errors import ConfigError


@dataclass(frozen=True)
class ArtifactInfo:
    """What the manifest records beside the file, beyond the weights: the task the model
    serves, its input names (``input_ids``, ``attention_mask``) and the steps that made it."""

    task: str = "classification"
    input_names: list[str] | None = None
    steps: list[str] | None = None


# writer(module, path, example_inputs, config, *, data, info, log) -> path: writes the artifact and
# its manifest at ``path`` (whose suffix is the format's), or raises ExportError / ConfigError.
FormatWriter = Callable[..., Path]


@dataclass(frozen=True)
class ExportFormat:
    name: str
    runtime: str  # the runtime ``torchslim.load`` runs its files on
    suffix: str
    configs: tuple[type, ...]  # its variants (ExportConfig classes); the first is the default (no quantization)
    writer: FormatWriter | str  # a callable, or "module:function" imported on first use (heavy back ends)
    summary: str = ""

    def config_for(self, options: dict[str, Any]) -> type:
        """The variant whose ``quantize`` and ``precision`` take these values; the default one
        otherwise, whose validation then says what the format takes instead."""
        for config in self.configs:
            if config.accepts("quantize", options.get("quantize", "none")) and \
                    config.accepts("precision", options.get("precision")):
                return config
        return next((c for c in self.configs if c.accepts("quantize", options.get("quantize", "none"))),
                    self.configs[0])

    def write(self, *args: Any, **kwargs: Any) -> Path:
        writer = self.writer
        if isinstance(writer, str):
            module, _, function = writer.partition(":")
            writer = getattr(importlib.import_module(module), function)
        return writer(*args, **kwargs)


FORMATS: Registry[ExportFormat] = Registry("export format", " A plug-in adds one with torchslim.export.register_format.")


def options_of(options: type) -> Iterable[type]:
    """The registered config classes that take a shared option group (``Int8Tuning``, ``Calibration``)."""
    return [c for name in FORMATS for c in FORMATS.get(name).configs if issubclass(c, options)]


def resolve_format(format: str | None, runtime: str | None) -> str:
    """The export format asked for by ``format`` or by the ``runtime`` that should run it."""
    if format == "aoti":
        format = "pt2"
    by_runtime = {FORMATS.get(n).runtime: n for n in reversed(FORMATS.names())}  # the first format wins
    if format is not None and format not in FORMATS:
        raise ConfigError(f"Unknown export format {format!r}. Use one of: {', '.join(FORMATS)}.")
    if runtime is not None and runtime not in by_runtime:
        raise ConfigError(
            f"Runtime {runtime!r} does not run an exported file. Exportable runtimes: "
            f"{', '.join(sorted(by_runtime))} (eager and compile use torchslim.artifacts.save_exported)."
        )
    if format is None:
        return by_runtime[runtime or "onnxruntime"]
    if runtime is not None and FORMATS.get(format).runtime != runtime:
        raise ConfigError(f"Format {format!r} runs on {FORMATS.get(format).runtime!r}, not on runtime {runtime!r}.")
    return format


def output_path(out: str | Path, format: str) -> Path:
    """``out`` is a file (its suffix names the format) or a folder that gets ``model<suffix>``."""
    out = Path(out)
    suffix = FORMATS.get(format).suffix
    if out.suffix in {FORMATS.get(n).suffix for n in FORMATS}:
        if out.suffix != suffix:
            raise ConfigError(f"Output {str(out)!r} has suffix {out.suffix!r}, but format {format!r} writes {suffix!r} files.")
        return out
    return out / f"model{suffix}"

