"""The user's own mistakes (model, data, paths) are bad input (exit 2, a cause and a fix), never
"This is a torchslim bug"; the Python API raises the same typed errors."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch
import torch.nn as nn

import torchslim
from tests.pipeline.test_pipeline import FAKE_STEPS, INTERRUPT, fake_measure
from torchslim.artifacts import save_exported
from torchslim.cli import run
from torchslim.data import load_data
from torchslim.errors import ArtifactError, DataError, ModelError, SpecError
from torchslim.pipeline import load_recipe
from torchslim.specs import build_model

FACTORIES = textwrap.dedent("""
    import torch
    import torch.nn as nn

    class NoParams(nn.Module):
        def forward(self, x):
            return x.flatten(1)[:, :10]

    class Raises(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(64, 10)
        def forward(self, x):
            return self.fc(x)  # x is [batch, 1, 8, 8]: shapes cannot be multiplied

    class ThreeInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(64, 10)
        def forward(self, a, b, c):
            return self.fc(a.flatten(1))

    class ReturnsDict(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(64, 10)
        def forward(self, x):
            return {"logits": self.fc(x.flatten(1))}

    class TooFewClasses(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(64, 3)
        def forward(self, x):
            return self.fc(x.flatten(1))
""")


def _err(capsys) -> str:
    return " ".join(capsys.readouterr().err.split())


@pytest.fixture(scope="module")
def factories(tmp_path_factory):
    path = tmp_path_factory.mktemp("f") / "models.py"
    path.write_text(FACTORIES)
    return path


@pytest.mark.parametrize(("name", "words"), [
    ("NoParams", "has no parameters"),
    ("Raises", "its forward raised RuntimeError"),
    ("ThreeInputs", "its forward takes (a, b, c) but each sample of the data is 1 input"),
    ("ReturnsDict", "returns a dict, not a tensor"),
    ("TooFewClasses", "gives 3 class scores but the data has 10 classes"),
])
def test_a_broken_user_model_is_named(factories, digits, name, words):
    with pytest.raises(ModelError) as e:
        build_model(f"{factories}:{name}", digits)
    assert words in e.value.message


def test_the_cli_exits_2_for_a_broken_model(factories, tmp_path, capsys):
    out = tmp_path / "t"
    assert run(["train", "--model", f"{factories}:Raises", "--epochs", "1", "--out", str(out)]) == 2
    err = _err(capsys)
    assert "its forward raised" in err and "torchslim bug" not in err
    assert not out.exists()  # the failed start left nothing behind


def test_the_python_api_raises_the_same_typed_errors(digits):
    class NoParams(nn.Module):
        def forward(self, x):
            return x.flatten(1)[:, :10]

    with pytest.raises(ModelError, match="no parameters"):
        torchslim.optimize(NoParams(), digits, load_recipe({"candidates": [{"name": "a", "steps": []}]},
                                                           step_table=FAKE_STEPS))
    with pytest.raises(SpecError, match="DATA spec string.*got int 123"):
        torchslim.benchmark(nn.Linear(64, 10), data=123)
    with pytest.raises(SpecError, match="got object"):
        torchslim.benchmark(object())


def _npz(tmp_path, **override):
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.normal(size=(40, 6)).astype(np.float32), "y_train": np.arange(40) % 3,
              "x_val": rng.normal(size=(20, 6)).astype(np.float32), "y_val": np.arange(20) % 3}
    arrays.update(override)
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    return f"npz:{path}"


@pytest.mark.parametrize(("override", "words"), [
    ({"y_train": np.array([-1] + [i % 3 for i in range(39)])}, "negative labels"),
    ({"y_val": np.arange(20) % 5}, "y_val has label 4"),
    ({"x_val": np.zeros((20, 7), dtype=np.float32)}, "x_val samples are shaped [7]"),
    ({"x_train": np.full((40, 6), np.nan, dtype=np.float32)}, "your data has NaNs"),
])
def test_unusable_npz_data_is_named(tmp_path, capsys, override, words):
    spec = _npz(tmp_path, **override)
    with pytest.raises(DataError) as e:
        load_data(spec)
    assert words in e.value.message
    assert run(["train", "--model", "digits-mlp", "--data", spec, "--epochs", "1", "--out", str(tmp_path / "o")]) == 2
    assert words in _err(capsys)


def test_good_npz_data_still_loads(tmp_path):
    assert load_data(_npz(tmp_path)).num_classes == 3


def test_an_unreadable_image_in_an_imagefolder_is_named(tmp_path):
    from PIL import Image

    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        for i in range(4):
            Image.fromarray(np.full((8, 8), 40 * i, dtype=np.uint8)).save(tmp_path / c / f"{i}.png")
    (tmp_path / "dog" / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(DataError, match="cannot read the image .*3.png"):  # at load or when read
        bundle = load_data(f"imagefolder:{tmp_path}")
        for split in (bundle.train, bundle.val, bundle.test):
            for i in range(len(split)):
                split[i]


def test_an_artifact_benchmarked_on_data_of_another_shape_is_named(tmp_path, capsys):
    model = nn.Sequential(nn.Linear(6, 3)).eval()
    path = save_exported(model, tmp_path / "m.pt2", (torch.randn(2, 6),))
    with pytest.raises(ArtifactError, match=r"takes inputs shaped \[batch, 6\].*gives samples shaped \[1, 8, 8\]"):
        torchslim.benchmark(path, data="digits")
    assert run(["bench", "--model", str(path), "--batch-sizes", "1"]) == 2
    assert "takes inputs shaped" in _err(capsys)


def test_ctrl_c_prints_the_resume_hint_on_stderr(digits, tmp_path, capsys):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    recipe = {"candidates": [{"name": "a", "steps": [{"scale": None}]}, {"name": "b", "steps": [{"interrupt": None}]}]}
    INTERRUPT["on"] = True
    try:
        with pytest.raises(KeyboardInterrupt):
            torchslim.optimize(model, digits, load_recipe(recipe, step_table=FAKE_STEPS),
                               run=torchslim.RunOptions(out=tmp_path / "run", device="cpu"),
                               measure=torchslim.MeasureOptions(batch_sizes=(1,), measure_fn=fake_measure({})))
    finally:
        INTERRUPT["on"] = False
    assert f"continue with --out {tmp_path / 'run'} --resume" in capsys.readouterr().err


def test_an_error_message_keeps_a_long_path_on_one_line(tmp_path, capsys):
    """A log or a pipe gets the path whole (the terminal wraps it, not torchslim)."""
    missing = tmp_path / ("a-rather-long-folder-name-" * 4) / "model.onnx"
    assert run(["bench", "--model", str(missing), "--data", "digits"]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "Traceback" not in err


@pytest.mark.parametrize("command", [["optimize", "--recipe", "quick"], ["train", "--model", "digits-mlp"],
                                     ["export", "--model", "digits-mlp"]])
def test_an_impossible_out_exits_2_before_any_work(tmp_path, capsys, command, monkeypatch):
    import torchslim.data
    import torchslim.pipeline._optimize
    import torchslim.specs

    def no_work(*a, **k):
        raise AssertionError("the model or data was loaded before --out was checked")

    for module in (torchslim.specs, torchslim.pipeline._optimize):
        monkeypatch.setattr(module, "resolve", no_work)
    monkeypatch.setattr(torchslim.data, "load_data", no_work)
    a_file = tmp_path / "a-file"
    a_file.write_text("mine")
    for out in ("/proc/torchslim-out", str(a_file), str(a_file / "sub")):
        assert run([*command, "--out", out]) == 2
        err = _err(capsys)
        assert out.split("/")[-1] in err and "torchslim bug" not in err
    assert a_file.read_text() == "mine"


def test_export_never_overwrites_existing_files(tmp_path, capsys):
    out = tmp_path / "exp"
    out.mkdir()
    (out / "model.onnx.json").write_text("my notes")
    assert run(["export", "--model", "digits-mlp", "--out", str(out)]) == 2
    assert "model.onnx.json already exist" in _err(capsys)
    assert (out / "model.onnx.json").read_text() == "my notes" and not (out / "model.onnx").exists()


def test_an_unwritable_cache_with_no_cached_model_exits_2(tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "home-is-a-file"
    blocker.write_text("")
    monkeypatch.delenv("TORCHSLIM_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(blocker))  # what a read-only or missing HOME gives: no cache folder
    assert run(["bench", "--model", "digits-mlp", "--batch-sizes", "1"]) == 2
    err = _err(capsys)
    assert "cache folder" in err and "TORCHSLIM_CACHE" in err and "torchslim bug" not in err


@pytest.mark.parametrize("where", ["factory", "import", "data"])
def test_user_code_calling_sys_exit_is_named_not_exit_0(tmp_path, capsys, monkeypatch, where):
    code = {"factory": "import sys, torch.nn as nn\ndef f():\n    sys.exit(0)\n",
            "import": "import sys\nsys.exit(0)\ndef f():\n    pass\n",
            "data": "import sys\ndef f():\n    sys.exit(0)\n"}[where]
    (tmp_path / "exiting_user_code.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    argv = (["--model", "digits-mlp", "--data", "exiting_user_code:f"] if where == "data"
            else ["--model", f"{tmp_path / 'exiting_user_code.py'}:f"])
    assert run(["bench", *argv, "--batch-sizes", "1"]) == 2
    err = _err(capsys)
    assert "sys.exit(0)" in err and "exiting_user_code" in err


@pytest.fixture
def sigterm_steps():
    """Two registered steps: ``keep`` (the model as it is) and ``sigterm`` (the process is sent
    SIGTERM mid-candidate, as ``kill`` or a job scheduler would)."""
    import os
    import signal

    from torchslim.core.registry import TECHNIQUES, Technique
    from torchslim.core.step import StepOutput

    armed = {"on": True}

    def sigterm(model, config, ctx):
        if armed["on"]:
            (ctx.work_dir / "half-written").write_text("a step's scratch file")
            os.kill(os.getpid(), signal.SIGTERM)
            raise AssertionError("SIGTERM did not stop the step")
        return StepOutput(model=model)

    TECHNIQUES.register("keep", Technique("keep", lambda o: dict(o or {}), lambda m, c, ctx: StepOutput(model=m), "test"))
    TECHNIQUES.register("sigterm", Technique("sigterm", lambda o: dict(o or {}), sigterm, "test"))
    yield armed
    TECHNIQUES.unregister("keep")
    TECHNIQUES.unregister("sigterm")


@pytest.mark.slow
def test_sigterm_stops_like_ctrl_c_with_the_resume_hint(sigterm_steps, tmp_path, capsys, monkeypatch):
    import signal
    import tempfile
    from collections.abc import Callable

    import torchslim.pipeline as pipeline
    from torchslim.report import load_report

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    # The CLI's optimize with the tests' quick measurement (accuracy, fixed latencies): seconds, not half a minute.
    class QuickMeasure(pipeline.MeasureOptions):
        measure_fn: Callable = fake_measure({})

    monkeypatch.setattr(pipeline, "MeasureOptions", QuickMeasure)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("candidates:\n  - {name: kept, steps: [{keep: {}}]}\n  - {name: killed, steps: [{sigterm: {}}]}\n")
    out = tmp_path / "run"
    argv = ["optimize", "--model", "digits-mlp", "--recipe", str(recipe), "--out", str(out), "--batch-sizes", "1"]
    assert run(argv) == 143
    err = _err(capsys)
    assert "terminated (SIGTERM)" in err and f"continue with --out {out} --resume" in err
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored after the command
    # no temporary files left (pymp-*: multiprocessing's own, removed when the process exits)
    assert [p for p in scratch.iterdir() if not p.name.startswith("pymp-")] == [] and not list(out.rglob(".*.tmp*"))
    assert [c.name for c in load_report(out).candidates] == ["kept"]
    sigterm_steps["on"] = False
    assert run([*argv, "--resume"]) == 0  # the hint works: the killed candidate runs, the kept one is reused
    assert [c.status for c in load_report(out).candidates] == ["ok", "ok"]
    assert "kept: already measured" in _err(capsys)
