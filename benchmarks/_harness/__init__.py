"""The benchmark harness: registry, environment capture, results envelope, shared loading."""

from benchmarks._harness._data import (
    MINILM,
    MINILM_DATA,
    MINILM_INPUTS,
    SENTENCES,
    full_length,
    load_minilm,
    load_zoo,
    results_path,
    singles,
)
from benchmarks._harness._environment import ROOT, capture, uptime
from benchmarks._harness._registry import (
    Benchmark,
    discover,
    load_benchmark,
    module_names,
    run_benchmark,
)
from benchmarks._harness._results import (
    BEFORE_THE_HARNESS,
    Context,
    Envelope,
    read_envelope,
    wrap_unenveloped,
    write_envelope,
)
from benchmarks._harness._timing import interleaved_ms

__all__ = [
    "BEFORE_THE_HARNESS",
    "MINILM",
    "MINILM_DATA",
    "MINILM_INPUTS",
    "ROOT",
    "SENTENCES",
    "Benchmark",
    "Context",
    "Envelope",
    "capture",
    "discover",
    "full_length",
    "interleaved_ms",
    "load_benchmark",
    "load_minilm",
    "load_zoo",
    "module_names",
    "read_envelope",
    "results_path",
    "run_benchmark",
    "singles",
    "uptime",
    "wrap_unenveloped",
    "write_envelope",
]
