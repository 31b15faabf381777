"""``python -m benchmarks list`` | ``python -m benchmarks run NAME [options]`` (from the repo root)."""

from __future__ import annotations

import sys

USAGE = """usage: python -m benchmarks list
       python -m benchmarks run NAME [--out FILE] [options]   (python -m benchmarks run NAME --help)"""


def main(argv: list[str]) -> int:
    if not (argv == ["list"] or (argv[:1] == ["run"] and len(argv) >= 2)):
        print(USAGE, file=sys.stderr)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    # imported here: the usage costs no torch import
    from benchmarks._harness import discover, load_benchmark, module_names, run_benchmark

    if argv == ["list"]:
        benchmarks = discover()
        width = max(map(len, benchmarks))
        for name, benchmark in benchmarks.items():
            print(f"{name:<{width}}  {benchmark.description}")
        return 0
    names = module_names()
    if argv[1] not in names:
        print(f"no benchmark named {argv[1]!r}; `python -m benchmarks list` lists them: {', '.join(names)}",
              file=sys.stderr)
        return 2
    run_benchmark(load_benchmark(argv[1]), argv[2:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
