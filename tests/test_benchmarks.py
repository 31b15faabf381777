"""The benchmark harness: every script in benchmarks/ registers and is listed, the results
envelope round-trips (and keeps other variants when a run writes one), every committed results
file is an envelope of a registered benchmark, and no benchmark edits ``sys.path``. Nothing here
measures anything: the benchmarks themselves are run by hand (benchmarks/README.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.__main__ import main
from benchmarks._harness import (
    BEFORE_THE_HARNESS,
    Context,
    Envelope,
    capture,
    discover,
    interleaved_ms,
    read_envelope,
    wrap_unenveloped,
    write_envelope,
)

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
SCRIPTS = sorted(p.stem for p in BENCHMARKS.glob("*.py") if not p.stem.startswith("_"))


@pytest.fixture(scope="module")
def registry():
    return discover()


def test_the_package_runs_from_the_repository_root():
    # the usage only: `list` in a fresh interpreter imports torch and every benchmark (5-10 s)
    done = subprocess.run([sys.executable, "-m", "benchmarks"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "python -m benchmarks run NAME" in done.stderr


def test_list_names_every_script_with_its_description(registry, capsys):
    assert main(["list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed] == SCRIPTS
    assert all(len(line.split(maxsplit=1)) == 2 for line in listed), "each line: name and description"


def test_every_script_registers_under_its_own_name(registry):
    assert sorted(registry) == SCRIPTS
    for name, benchmark in registry.items():
        assert "\n" not in benchmark.description and benchmark.description
        argv = ["--variant", "check"] if benchmark.variants else []
        args = benchmark.parser().parse_args(argv)  # every option has a default (or is the variant key)
        assert args.out == BENCHMARKS / "results" / f"{name}.json"


def test_run_refuses_an_unknown_name_with_the_names_it_knows(capsys):
    assert main(["run", "no-such-benchmark"]) == 2
    assert "quantize" in capsys.readouterr().err


def test_the_envelope_round_trips(tmp_path):
    envelope = Envelope(benchmark="quantize", date="2026-12-04T18:00:00+00:00", environment=capture(),
                        parameters={"rounds": 1, "models": "digits-cnn"}, results={"rows": [{"p50_ms": {"1": 0.25}}]})
    path = write_envelope(envelope, tmp_path / "quantize.json")
    assert read_envelope(path) == envelope
    assert [p.name for p in tmp_path.iterdir()] == ["quantize.json"]  # the temporary file was renamed over
    assert envelope.environment["cores"] and envelope.environment["versions"]["torch"]


def test_a_variant_run_keeps_the_files_other_variants(tmp_path):
    out = tmp_path / "minilm_prune.json"
    write_envelope(Envelope(benchmark="minilm_prune", date="2026-11-30T00:00:00+00:00",
                            environment={"old": {"note": BEFORE_THE_HARNESS}}, parameters={"old": {}},
                            results={"old": {"rows": [1]}}), out)
    Context("minilm_prune", out, {"ratios": [0.5]}, {"cpu": "x"}, variant="new").save({"rows": [2]})
    merged = read_envelope(out)
    assert merged.results == {"old": {"rows": [1]}, "new": {"rows": [2]}}
    assert merged.parameters == {"old": {}, "new": {"ratios": [0.5]}}
    assert set(merged.environment) == {"old", "new"} and "uptime_after" in merged.environment["new"]


def test_a_file_from_before_the_harness_is_wrapped_with_its_numbers_untouched(tmp_path):
    old = {"model": "digits-cnn", "runs": [{"wall_s": 82.3}], "cpu": "x"}
    (tmp_path / "ray_executor.json").write_text(json.dumps(old))
    envelope = wrap_unenveloped(tmp_path / "ray_executor.json", "ray_executor")
    assert read_envelope(tmp_path / "ray_executor.json") == envelope
    assert envelope.results == old and envelope.environment["note"] == BEFORE_THE_HARNESS


def test_every_results_file_is_an_envelope_of_a_registered_benchmark(registry):
    files = sorted((BENCHMARKS / "results").glob("*.json"))
    assert files
    for path in files:
        envelope = read_envelope(path)
        assert envelope.benchmark in registry, path.name
        if registry[envelope.benchmark].variants:
            assert set(envelope.results) == set(envelope.parameters) == set(envelope.environment), path.name


def test_no_benchmark_edits_sys_path():
    offenders = [str(p.relative_to(ROOT)) for p in BENCHMARKS.rglob("*.py") if "sys.path" in p.read_text()]
    assert offenders == []


@pytest.mark.parametrize("workload_major", [False, True])
def test_interleaved_timing_walks_every_variant_and_workload_each_round(workload_major):
    calls, rounds_done = [], []
    variants = {name: (lambda x, name=name: calls.append((name, x))) for name in ("a", "b")}
    extra = None if workload_major else (lambda fn: {"extra s": 1.5})
    median = interleaved_ms(variants, {"w1": (1,), "w2": (2,)}, 2, pause_s=0, workload_major=workload_major,
                            extra=extra, on_round=lambda _m, done: rounds_done.append(done))
    timed = calls[4:]  # after one warm-up call per variant and workload
    assert timed[:4] == ([("a", 1), ("b", 1), ("a", 2), ("b", 2)] if workload_major
                         else [("a", 1), ("a", 2), ("b", 1), ("b", 2)])
    assert len(timed) == 8 and rounds_done == [1, 2]
    assert set(median) == {"a", "b"} and all(v >= 0 for per in median.values() for v in per.values())
    assert set(median["a"]) == ({"w1", "w2"} if workload_major else {"w1", "w2", "extra s"})
