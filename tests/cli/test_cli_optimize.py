"""`torchslim optimize | recipes | report` through the real CLI: exit codes and messages."""

from __future__ import annotations

import json
import textwrap

import pytest

from torchslim.cli import run
from torchslim.report import load_report

FACTORY = textwrap.dedent("""
    import torch.nn as nn

    def make():
        # never seen by torchslim before, and given without weights: it is trained first
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 24), nn.ReLU(), nn.Linear(24, 10))
""")


def _err(capsys) -> str:
    return " ".join(capsys.readouterr().err.split())  # the console wraps long lines


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_recipes_lists_the_builtins(capsys):
    assert run(["recipes"]) == 0
    out = capsys.readouterr().out
    for name in ("default", "quick", "deep-compression", "prune", "export"):
        assert name in out
    assert "pruned-distilled-int8" in out and "[compile]" in out


@pytest.mark.parametrize(("args", "needle"), [
    (["--max-accuracy-drop", "-1"], "--max-accuracy-drop"),
    (["--time-budget", "-3"], "--time-budget"),
    (["--recipe", "no-such-recipe"], "Built-in recipes"),
    (["--recipe", "missing/recipe.yaml"], "does not exist"),
    (["--resume"], "--resume needs --out"),
    (["--batch-sizes", "0,4"], "--batch-sizes"),
    (["--device", "tpu"], "Unknown device"),
])
def test_bad_options_exit_2(args, needle, capsys, tmp_path):
    assert run(["optimize", "--out", str(tmp_path / "run"), *args] if "--resume" not in args else ["optimize", *args]) == 2
    assert needle in _err(capsys)
    assert not (tmp_path / "run" / "report.json").exists()


def test_recipe_typos_and_unknown_steps_exit_2_with_the_path(capsys, tmp_path):
    typo = _write(tmp_path, "typo.yaml", """
        candidates:
          - name: a
            stpes: []
    """)
    assert run(["optimize", "--recipe", typo, "--out", str(tmp_path / "r1")]) == 2
    assert "candidates[0].stpes" in _err(capsys)
    unknown = _write(tmp_path, "unknown.yaml", """
        candidates:
          - name: a
            steps: []
          - name: b
            steps: [{quantise: {method: dynamic}}]
    """)
    assert run(["optimize", "--recipe", unknown, "--out", str(tmp_path / "r2")]) == 2
    err = _err(capsys)
    assert "candidates[1].steps[0]" in err and "quantise" in err and "Known steps" in err
    bad_runtime = _write(tmp_path, "runtime.yaml", """
        candidates:
          - name: a
            steps: []
            runtime: tflite
    """)
    assert run(["optimize", "--recipe", bad_runtime, "--out", str(tmp_path / "r3")]) == 2
    assert "candidates[0].runtime" in _err(capsys)


def test_out_dir_holding_another_run_is_refused(capsys, tmp_path):
    used = tmp_path / "used"
    (used / "candidates").mkdir(parents=True)
    recipe = _write(tmp_path, "r.yaml", "candidates: [{name: a, steps: []}]\n")
    assert run(["optimize", "--recipe", recipe, "--out", str(used)]) == 2
    assert "already holds files that are not a torchslim optimize run (candidates)" in _err(capsys)


def test_report_of_a_missing_run_exits_2(capsys, tmp_path):
    assert run(["report", str(tmp_path)]) == 2
    assert "No report" in _err(capsys)


@pytest.mark.slow
def test_unseen_factory_model_end_to_end_then_report_and_resume(capsys, tmp_path, monkeypatch):
    """A file.py:factory without weights goes through a real search: trained first, measured
    with the real harness; a candidate that cannot run is recorded with its reason."""
    monkeypatch.setenv("TORCHSLIM_CACHE", str(tmp_path / "cache"))
    model = _write(tmp_path, "mynet.py", FACTORY)
    recipe = _write(tmp_path, "runtimes.yaml", """
        candidates:
          - name: same-eager
            steps: []
          - name: on-tensorrt
            steps: []
            runtime: tensorrt
    """)
    out = tmp_path / "run"
    args = ["optimize", "--model", f"{model}:make", "--recipe", recipe, "--out", str(out), "--batch-sizes", "1,8"]
    assert run(args) == 0
    captured = capsys.readouterr()
    assert "same-eager" in captured.out
    data = json.loads((out / "report.json").read_text())
    report = load_report(out)  # schema-valid
    assert data["model"].endswith("mynet.py:make") and report.baseline.metrics.accuracy > 0.8  # it was trained
    by = {c.name: c for c in report.candidates}
    assert by["same-eager"].status == "ok" and by["same-eager"].within_budget
    assert (out / by["same-eager"].artifact).is_file()
    assert by["on-tensorrt"].status == "failed" and by["on-tensorrt"].error
    assert report.best == "same-eager"
    # the unchanged model is never reported as a gain: its size says so whatever the timing noise
    assert any("not smaller" in n for n in by["same-eager"].note_texts("not_smaller"))
    assert "notice:" in (out / "run.log").read_text()  # the "trained first" notice is logged
    html = (out / "report.html").read_text()
    assert 'id="candidates"' in html and "http://" not in html

    (out / "report.html").unlink()
    assert run(["report", str(out)]) == 0
    assert (out / "report.html").is_file() and "same-eager" in capsys.readouterr().out

    assert run(args) == 2  # the same --out again: refused, not overwritten
    assert run([*args, "--resume"]) == 0
    assert "already measured" in (out / "run.log").read_text()
    again = load_report(out)
    assert again.candidate("same-eager").metrics == by["same-eager"].metrics
