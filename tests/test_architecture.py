"""The architecture holds: import contracts kept, and the registries are the one place to add
a technique or a runtime (a fake of each runs through optimize and load with nothing else edited)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import torchslim
from torchslim.core.registry import RUNTIMES, TECHNIQUES, WRITERS
from torchslim.data import load_data

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept():
    """Layers (no upward import, lazy ones included) and independent techniques: import-linter."""
    lint = Path(sys.executable).with_name("lint-imports")
    if not lint.exists():
        pytest.skip("import-linter is not installed (it is a dev dependency: make install)")
    proc = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "0 broken" in proc.stdout


def test_no_import_cycles_between_modules():
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("torchslim", include_external_packages=False)
    cycles = [m for m in graph.modules
              for imported in graph.find_modules_directly_imported_by(m)
              if graph.chain_exists(importer=imported, imported=m)]
    assert cycles == []


def test_every_registered_step_validates_its_defaults_or_says_why():
    from torchslim.errors import ConfigError

    for name in TECHNIQUES.names():
        entry = TECHNIQUES.get(name)
        try:
            entry.validate(None)
        except ConfigError as e:  # a step whose options are required must say which
            assert e.message


def test_every_runtime_names_a_format_and_builds_or_explains():
    from torchslim.errors import UnsupportedError

    for name in RUNTIMES.names():
        entry = RUNTIMES.get(name)
        assert entry.formats
        try:
            runtime = entry.factory()
        except (UnsupportedError, ImportError):
            continue
        assert callable(runtime.load)


@pytest.fixture
def fake_plugins(monkeypatch):
    """Registered the way a user's plug-in is: named in TORCHSLIM_PLUGINS, so the measurement's
    fresh processes (the memory probe) load it too."""
    import importlib

    monkeypatch.setenv("TORCHSLIM_PLUGINS", "tests.fixtures.fake_plugin")
    monkeypatch.chdir(ROOT)
    importlib.import_module("tests.fixtures.fake_plugin")
    yield
    TECHNIQUES.unregister("halve")
    RUNTIMES.unregister("fake-runtime")
    WRITERS.unregister("fake-runtime")
    sys.modules.pop("tests.fixtures.fake_plugin", None)


def test_a_registered_technique_and_runtime_run_through_optimize_and_load(fake_plugins, tmp_path):
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    recipe = {"candidates": [{"name": "halved", "steps": [{"halve": {}}]}]}
    report = torchslim.optimize(model, load_data("digits"), recipe,
                                run=torchslim.RunOptions(out=tmp_path / "run", device="cpu", html=False),
                                measure=torchslim.MeasureOptions(batch_sizes=(1,)))
    cand = report.candidate("halved")
    assert cand.status == "ok", cand.error
    assert cand.metrics.runtime == "fake-runtime" and "fake technique ran" in cand.note_texts("technique")
    loaded = torchslim.load(tmp_path / "run" / cand.artifact)
    x = torch.randn(3, 1, 8, 8)
    assert torch.allclose(loaded(x), model(x), atol=1e-5)


def test_no_function_in_src_is_longer_than_60_lines():
    import ast

    long = []
    for path in sorted((ROOT / "src" / "torchslim").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 60:
                long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert long == []


def test_the_public_surface_is_the_curated_api():
    assert set(dir(torchslim)) <= set(torchslim.__all__) | {"__version__"}


def test_a_registered_technique_runs_through_the_cli_verb(fake_plugins, tmp_path, capsys):
    from torchslim.cli import run
    from torchslim.report import load_report

    out = tmp_path / "apply"
    assert run(["apply", "halve", "--model", "digits-mlp", "--out", str(out), "--batch-sizes", "1",
                "--device", "cpu"]) == 0
    cand = load_report(out).candidate("halve")
    assert cand.status == "ok" and cand.metrics.runtime == "fake-runtime"
    assert (out / cand.artifact).suffix == ".fake"
    assert run(["apply", "no-such-step", "--model", "digits-mlp", "--out", str(tmp_path / "x")]) == 2
    assert "no-such-step" in capsys.readouterr().err


def test_the_finetune_step_trains_from_the_current_weights():
    from torchslim.core.step import StepContext
    from torchslim.train import validate_step as validate_finetune
    from torchslim.train._finetune import run_step as run_finetune

    data = load_data("digits")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    before = [p.detach().clone() for p in model.parameters()]
    config = validate_finetune({"epochs": 2, "lr": 0.01})
    ctx = StepContext(data=data, device=torch.device("cpu"), teacher=model, work_dir=ROOT, example_inputs=())
    out = run_finetune(model, config, ctx)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))  # a copy trained
    from torchslim.data import accuracy

    assert accuracy(out.model, data.val) > accuracy(model, data.val) + 0.3
    assert "finetune(epochs=2" in out.notes[0]


# The tests of a package live in tests/<package>/; only tests that span the whole product (layers,
# the block contract, docs, the front door, the public API) and top-level modules stay at the top.
TOP_LEVEL_TESTS = {"test_architecture.py", "test_block_contract.py", "test_docs.py", "test_front_door.py",
                   "test_public_api.py", "test_benchmarks.py", "test_specs.py", "test_performance.py"}


def test_tests_mirror_the_package_folders():
    packages = {p.name for p in (ROOT / "src" / "torchslim").iterdir() if (p / "__init__.py").exists()}
    folders = {p.name for p in (ROOT / "tests").iterdir() if p.is_dir() and list(p.glob("test_*.py"))}
    assert folders <= packages, f"test folders naming no package: {sorted(folders - packages)}"
    stray = {p.name for p in (ROOT / "tests").glob("test_*.py")} - TOP_LEVEL_TESTS
    assert not stray, f"move these into tests/<package>/: {sorted(stray)}"
    modules = {p.stem for p in (ROOT / "src" / "torchslim").glob("*.py")}
    assert {"specs", "performance"} <= modules  # the two top-level modules the top-level tests are about
