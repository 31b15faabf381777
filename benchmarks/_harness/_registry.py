"""The benchmarks registry: every module of the ``benchmarks`` package that defines ``BENCHMARK``.

Found by listing the package's modules, not by import side effects: a module is a benchmark
because it says so, and ``discover`` names any module that does not.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._harness._data import results_path
from benchmarks._harness._environment import capture, uptime
from benchmarks._harness._results import Context


def _no_parameters(_parser: argparse.ArgumentParser) -> None:
    pass


@dataclass(frozen=True)
class Benchmark:
    """One benchmark. ``parameters`` adds its options to an argparse parser; ``run`` measures and
    returns the JSON-able results (the harness saves them; ``ctx.save`` saves partial ones;
    None: nothing was measured, e.g. an option that only prints saved results).
    ``variants``: the results file keeps several runs, each under ``--variant KEY``."""

    name: str
    description: str
    run: Callable[[argparse.Namespace, Context], Any]
    parameters: Callable[[argparse.ArgumentParser], None] = _no_parameters
    variants: bool = False

    def parser(self, prog: str | None = None) -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(prog=prog or f"python -m benchmarks run {self.name}",
                                         description=self.description)
        self.parameters(parser)
        parser.add_argument("--out", type=Path, default=results_path(self.name),
                            help=f"results file (default: benchmarks/results/{self.name}.json)")
        if self.variants:
            parser.add_argument("--variant", required=True,
                                help="the key this run's results, parameters and environment take in the file "
                                     "(the file keeps every other variant)")
        return parser


def module_names() -> list[str]:
    import benchmarks

    return sorted(m.name for m in pkgutil.iter_modules(benchmarks.__path__) if not m.name.startswith("_"))


def load_benchmark(module_name: str) -> Benchmark:
    """The ``BENCHMARK`` of ``benchmarks/<module_name>.py`` (only that module is imported)."""
    benchmark = getattr(importlib.import_module(f"benchmarks.{module_name}"), "BENCHMARK", None)
    if not isinstance(benchmark, Benchmark):
        raise TypeError(f"benchmarks/{module_name}.py defines no BENCHMARK = Benchmark(...)")
    if benchmark.name != module_name:
        raise ValueError(f"benchmarks/{module_name}.py registers the name {benchmark.name!r}; use the module's")
    return benchmark


def discover() -> dict[str, Benchmark]:
    return {name: load_benchmark(name) for name in module_names()}


def run_benchmark(benchmark: Benchmark, argv: list[str]) -> Path | None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a benchmark measures local models; it never downloads one
    args = benchmark.parser().parse_args(argv)
    parameters = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                  if k not in ("out", "variant")}
    ctx = Context(benchmark.name, args.out, parameters, capture(), variant=getattr(args, "variant", None))
    print(f"{benchmark.name}: {benchmark.description}\n  {ctx.environment['cpu']}, {ctx.environment['cores']} cores; "
          f"{ctx.environment['uptime_before']}", flush=True)
    started = time.perf_counter()
    results = benchmark.run(args, ctx)
    if results is None:
        return None
    path = ctx.save(results)
    print(f"{benchmark.name}: saved {path} in {time.perf_counter() - started:.0f} s; {uptime()}", flush=True)
    return path
