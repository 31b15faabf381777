"""--out is never someone else's: no overwritten user files, one run at a time, no poisoned
directory after a failed start, and resume re-checks what it reuses."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from tests.pipeline.test_pipeline import CALLS, FAKE_STEPS, fake_measure
from torchslim.bench import accuracy
from torchslim.cli import run
from torchslim.core.rundir import MARKER, claim_run_dir
from torchslim.data import load_data
from torchslim.errors import ConfigError, RunDirError, TorchslimError
from torchslim.pipeline import MeasureOptions, RunOptions, load_recipe, optimize
from torchslim.pipeline._train import TRAIN_RUN, train_from_specs
from torchslim.train import TrainConfig, fit

RECIPE = {"candidates": [{"name": "a", "steps": [{"scale": {"factor": 1.0}}]},
                         {"name": "b", "steps": [{"scale": {"factor": 2.0}}]}]}


@pytest.fixture(scope="module")
def trained():
    data = load_data("digits")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    fit(model, data, TrainConfig(epochs=3, lr=1e-2))
    assert accuracy(model, data.test) > 0.8
    return model, data


def _optimize(trained, out, recipe=RECIPE, **run):
    model, data = trained
    return optimize(model, data, load_recipe(recipe, step_table=FAKE_STEPS),
                    run=RunOptions(out=out, device="cpu", html=False, **run),
                    measure=MeasureOptions(batch_sizes=(1,), measure_fn=fake_measure({})))


def _err(capsys) -> str:
    return " ".join(capsys.readouterr().err.split())  # rich wraps long lines


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_optimize_never_writes_over_a_users_files(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.html").write_text("my own report")
    (mine / "baseline.pt2").write_bytes(b"my own model")
    before = _snapshot(mine)
    for extra in ([], ["--resume"]):
        assert run(["optimize", "--out", str(mine), *extra]) == 2
        err = _err(capsys)
        assert "baseline.pt2" in err and "report.html" in err and "nothing was changed" in err
    assert _snapshot(mine) == before and sorted(p.name for p in mine.iterdir()) == ["baseline.pt2", "report.html"]


def test_train_never_writes_over_a_users_files_or_a_finished_run(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    assert run(["train", "--model", "digits-mlp", "--epochs", "1", "--out", str(mine)]) == 2
    assert "notes.txt" in _err(capsys)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    finished = tmp_path / "finished"
    finished.mkdir()
    (finished / "checkpoint.pt").write_bytes(b"a finished run's checkpoint")  # a run from before the marker
    assert run(["train", "--model", "digits-mlp", "--epochs", "1", "--out", str(finished)]) == 2
    err = _err(capsys)
    assert "already holds a torchslim run" in err and "--resume" in err
    assert (finished / "checkpoint.pt").read_bytes() == b"a finished run's checkpoint"
    claim_run_dir(finished, TRAIN_RUN, resume=True).release()  # with --resume it is ours to continue


def test_a_second_run_on_a_locked_directory_names_the_holder(tmp_path, capsys):
    import os

    held = claim_run_dir(tmp_path / "busy", TRAIN_RUN, resume=False)
    try:
        with pytest.raises(RunDirError, match=f"in use by another torchslim run \\(process {os.getpid()}\\)"):
            claim_run_dir(tmp_path / "busy", TRAIN_RUN, resume=True)
        assert run(["train", "--model", "digits-mlp", "--out", str(tmp_path / "busy"), "--resume"]) == 2
        assert f"process {os.getpid()}" in _err(capsys)
    finally:
        held.release()
    claim_run_dir(tmp_path / "busy", TRAIN_RUN, resume=False).release()  # free again once released


def test_a_run_of_another_kind_is_refused(tmp_path):
    claim_run_dir(tmp_path / "t", TRAIN_RUN, resume=False).release()
    with pytest.raises(RunDirError, match="holds a torchslim train run, not a optimize run"):
        optimize(nn.Linear(2, 2), "digits", run=RunOptions(out=tmp_path / "t"))


def test_a_failed_start_leaves_out_as_found_and_the_corrected_command_works(trained, tmp_path):
    fresh, empty = tmp_path / "fresh", tmp_path / "empty"
    empty.mkdir()
    for out in (fresh, empty):
        with pytest.raises(TorchslimError, match="DataBundle, got object"):
            optimize(trained[0], data=object(), recipe=load_recipe(RECIPE, step_table=FAKE_STEPS), run=RunOptions(out=out))
        with pytest.raises(TorchslimError, match="does not exist"):  # fails after the directory was claimed
            optimize(trained[0], data=f"npz:{tmp_path / 'missing.npz'}", recipe=load_recipe(RECIPE, step_table=FAKE_STEPS),
                     run=RunOptions(out=out))
    assert not fresh.exists() and list(empty.iterdir()) == []
    report = _optimize(trained, fresh)  # the same --out, corrected
    assert report.best in ("a", "b") and (fresh / MARKER).is_file()


def test_a_failed_train_start_leaves_out_as_found(tmp_path):
    out = tmp_path / "t"
    with pytest.raises(TorchslimError):
        train_from_specs("digits-mlp", f"npz:{tmp_path / 'missing.npz'}", TrainConfig(epochs=1), out)
    assert not out.exists()


def test_resume_remeasures_a_candidate_whose_artifact_is_gone_or_changed(trained, tmp_path):
    out = tmp_path / "run"
    first = _optimize(trained, out)
    by = {c.name: c for c in first.candidates}
    shutil.rmtree(out / "candidates" / "a")
    changed = out / by["b"].artifact
    data = bytearray(changed.read_bytes())
    data[-30] ^= 1
    changed.write_bytes(bytes(data))
    CALLS.clear()
    again = _optimize(trained, out, resume=True)
    assert sorted(CALLS) == ["a", "b"]  # both measured again, not trusted
    for c in again.candidates:
        assert (out / c.artifact).is_file() and c.status == "ok"
    CALLS.clear()
    _optimize(trained, out, resume=True)
    assert CALLS == []  # intact artifacts are reused


def test_resume_with_another_model_data_or_recipe_says_so(trained, tmp_path):
    out = tmp_path / "run"
    _optimize(trained, out, recipe={"candidates": [RECIPE["candidates"][0]]})
    with pytest.raises(ConfigError, match="it optimized the model python:Sequential, not python:Linear"):
        optimize(nn.Linear(64, 10), trained[1], load_recipe({"candidates": [RECIPE["candidates"][0]]}, step_table=FAKE_STEPS),
                 run=RunOptions(out=out, resume=True))
    report = json.loads((out / "report.json").read_text())
    with pytest.raises(ConfigError, match=re.escape(f"it ran the recipe {report['recipe']}, not default")):
        optimize(trained[0], trained[1], recipe="default", run=RunOptions(out=out, resume=True))


def _victim(tmp_path):
    victim = tmp_path / "victim"
    (victim / "a").mkdir(parents=True)
    (victim / "a" / "precious.txt").write_text("the user's own file")
    return victim


@pytest.mark.parametrize("link", ["candidates", "candidates/a"])
def test_resume_never_follows_a_link_out_of_the_run_dir(trained, tmp_path, capsys, link):
    out = tmp_path / "run"
    _optimize(trained, out)
    victim = _victim(tmp_path)
    shutil.rmtree(out / link)
    (out / link).symlink_to(victim if link == "candidates" else victim / "a", target_is_directory=True)
    with pytest.raises(RunDirError, match=f"symbolic links that lead out of it \\('{link}' -> "):
        _optimize(trained, out, resume=True)
    assert run(["optimize", "--out", str(out), "--resume", "--recipe", "quick"]) == 2
    assert link in _err(capsys)
    assert (victim / "a" / "precious.txt").read_text() == "the user's own file"


def test_remove_inside_unlinks_a_link_and_refuses_a_path_through_one(tmp_path):
    from torchslim.core.rundir import remove_inside

    victim, root = _victim(tmp_path), tmp_path / "run"
    (root / "candidates").mkdir(parents=True)
    (root / "candidates" / "a").symlink_to(victim / "a")
    remove_inside(root / "candidates" / "a", root)  # the link goes, its target stays
    assert not (root / "candidates" / "a").exists() and (victim / "a" / "precious.txt").is_file()
    (root / "candidates").rmdir()
    (root / "candidates").symlink_to(victim)
    with pytest.raises(RunDirError, match="never deletes outside its run directory"):
        remove_inside(root / "candidates" / "a", root)
    assert (victim / "a" / "precious.txt").is_file()


def test_resume_confines_artifact_paths_read_from_report_json(trained, tmp_path):
    from tests.pipeline.test_pipeline import CALLS
    from torchslim.artifacts import artifact_files, manifest_path

    out = tmp_path / "run"
    first = _optimize(trained, out)
    outside = tmp_path / "outside"
    by = {c.name: c for c in first.candidates}
    for c in [first.baseline, *first.candidates]:  # intact, digest-matching artifacts, but outside --out
        (outside / c.name).mkdir(parents=True)
        for f in [*artifact_files(out / c.artifact), manifest_path(out / c.artifact)]:
            shutil.copy2(f, outside / c.name / f.name)
    data = json.loads((out / "report.json").read_text())
    for c in [data["baseline"], *data["candidates"]]:
        name = Path(by[c["name"]].artifact).name if c["name"] in by else c["artifact"]
        c["artifact"] = f"../outside/{c['name']}/{name}" if c["name"] == "a" else str(outside / c["name"] / name)
    (out / "report.json").write_text(json.dumps(data))
    CALLS.clear()
    again = _optimize(trained, out, resume=True)
    assert sorted(CALLS) == ["a", "b"]  # rebuilt inside --out, not reused from outside
    for c in [again.baseline, *again.candidates]:
        assert c.artifact and not Path(c.artifact).is_absolute() and ".." not in Path(c.artifact).parts
        assert (out / c.artifact).resolve().is_relative_to(out.resolve())
    assert again.best in ("a", "b")
