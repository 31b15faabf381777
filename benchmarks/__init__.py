"""torchslim's benchmarks: one module per benchmark, run through one harness.

    python -m benchmarks list
    python -m benchmarks run NAME [--out FILE] [benchmark options...]

Each module defines ``BENCHMARK`` (a :class:`benchmarks._harness.Benchmark`: name, one-line
description, parameters, run function); the harness captures the environment, runs it and
writes one JSON envelope per benchmark to ``benchmarks/results/NAME.json``. See README.md.
"""
