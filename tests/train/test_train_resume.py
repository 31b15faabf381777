"""Checkpoints: resume reaches the same weights as an uninterrupted run; a kill -9 leaves the
last good checkpoint; foreign or missing checkpoints and NaN losses give clear errors."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

import torchslim
from torchslim import zoo
from torchslim.data import DataBundle, load_data
from torchslim.errors import TrainingError
from torchslim.train import TrainConfig, fit
from torchslim.train._checkpoint import CHECKPOINT_NAME, load_checkpoint

SRC = str(Path(torchslim.__file__).resolve().parents[1])


@pytest.fixture(scope="module")
def small_digits() -> DataBundle:
    full = load_data("digits")
    x, y = full.train.tensors
    return DataBundle("digits-small", TensorDataset(x[:500], y[:500]), full.val, full.test, num_classes=10, input_shape=(1, 8, 8))


def _cnn() -> torch.nn.Module:
    torch.manual_seed(0)
    return zoo.create_model("digits-cnn")  # BN buffers and dropout RNG must survive the resume too


# 500 samples / 64 = 8 micro-batches -> 4 optimizer steps per epoch with accumulation 2
CONFIG = dict(epochs=3, batch_size=64, grad_accum_steps=2, checkpoint_every_steps=3, seed=5)


class Killed(Exception):
    pass


def _kill_at(step: int):
    def hook(state):
        if state.step == step:
            raise Killed

    return hook


@pytest.mark.slow
def test_interrupted_and_resumed_run_equals_uninterrupted_run(small_digits, tmp_path):
    reference = _cnn()
    ref_result = fit(reference, small_digits, TrainConfig(**CONFIG), out_dir=tmp_path / "ref")

    interrupted = _cnn()
    with pytest.raises(Killed):  # dies at step 7 (mid-epoch 2); the last checkpoint is step 6
        fit(interrupted, small_digits, TrainConfig(**CONFIG), out_dir=tmp_path / "run", hooks=[_kill_at(7)])
    saved = load_checkpoint(tmp_path / "run", interrupted)
    assert (saved["step"], saved["epoch"], saved["micro_batch"]) == (6, 1, 4)

    resumed = _cnn()
    result = fit(resumed, small_digits, TrainConfig(**CONFIG), out_dir=tmp_path / "run", resume=True)
    assert result.steps == ref_result.steps == 12 and result.epochs_run == 3
    assert result.best_val_accuracy == ref_result.best_val_accuracy
    for name, tensor in reference.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], tensor), name  # bit-identical on CPU
    assert [h["loss"] for h in result.history] == [h["loss"] for h in ref_result.history]


_KILLED_WRITER = textwrap.dedent(
    """
    import os, signal, sys, torch
    from torch.utils.data import TensorDataset
    from torchslim import zoo
    from torchslim.data import DataBundle, load_data
    from torchslim.train import TrainConfig, fit

    full = load_data("digits")
    x, y = full.train.tensors
    data = DataBundle("s", TensorDataset(x[:256], y[:256]), full.val, full.test, num_classes=10, input_shape=(1, 8, 8))
    real_save, writes = torch.save, []

    def save_then_die(obj, path, *a, **k):
        writes.append(path)
        if len(writes) == 2:  # the second checkpoint: write half a file, then kill -9 ourselves
            with open(path, "wb") as f:
                f.write(b"PK\\x03\\x04 half a checkpoint")
            os.kill(os.getpid(), signal.SIGKILL)
        return real_save(obj, path, *a, **k)

    torch.save = save_then_die
    torch.manual_seed(0)
    fit(zoo.create_model("digits-mlp"), data, TrainConfig(epochs=2, checkpoint_every_steps=2), out_dir=sys.argv[1])
    """
)


@pytest.mark.slow
def test_kill_9_during_a_checkpoint_write_keeps_the_last_good_one(tmp_path):
    script = tmp_path / "killed.py"
    script.write_text(_KILLED_WRITER)
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "run")], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    torch.manual_seed(0)
    model = zoo.create_model("digits-mlp")
    saved = load_checkpoint(tmp_path / "run", model)  # the first checkpoint, intact
    assert saved["step"] == 2
    full = load_data("digits")
    x, y = full.train.tensors
    data = DataBundle("s", TensorDataset(x[:256], y[:256]), full.val, full.test, num_classes=10, input_shape=(1, 8, 8))
    result = fit(model, data, TrainConfig(epochs=2, checkpoint_every_steps=2), out_dir=tmp_path / "run", resume=True)
    assert result.steps == 8 and result.epochs_run == 2
    assert not list((tmp_path / "run").glob(".checkpoint.*"))  # the dead writer's temp file was swept


def test_nan_loss_keeps_the_last_good_checkpoint(small_digits, tmp_path):
    calls = []

    def poisoned(out, y, _x):
        calls.append(1)
        loss = torch.nn.functional.cross_entropy(out, y)
        return loss * math.nan if len(calls) > 5 else loss

    torch.manual_seed(0)
    model = zoo.create_model("digits-mlp")
    with pytest.raises(TrainingError, match="diverged.*step 6"):
        fit(model, small_digits, TrainConfig(epochs=1, checkpoint_every_steps=2), loss_fn=poisoned, out_dir=tmp_path)
    saved = load_checkpoint(tmp_path / CHECKPOINT_NAME, model)
    assert saved["step"] == 4
    assert all(torch.isfinite(t).all() for t in saved["model"].values())


def test_resume_without_a_checkpoint_is_a_clear_error(small_digits, tmp_path):
    with pytest.raises(TrainingError, match="no checkpoint"):
        fit(zoo.create_model("digits-mlp"), small_digits, TrainConfig(epochs=1), out_dir=tmp_path, resume=True)


def test_checkpoint_from_another_model_is_refused(small_digits, tmp_path):
    fit(zoo.create_model("digits-mlp"), small_digits, TrainConfig(epochs=1), out_dir=tmp_path)
    assert (tmp_path / "best.safetensors").is_file() and (tmp_path / "metrics.jsonl").is_file()
    with pytest.raises(TrainingError, match="different model"):
        fit(zoo.create_model("lenet-300-100"), small_digits, TrainConfig(epochs=2), out_dir=tmp_path, resume=True)


def test_checkpoint_loads_with_weights_only(small_digits, tmp_path):
    fit(zoo.create_model("digits-mlp"), small_digits, TrainConfig(epochs=1), out_dir=tmp_path)
    state = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    assert {"model", "optimizer", "scheduler", "scaler", "rng", "epoch", "micro_batch", "step"} <= state.keys()


@pytest.mark.slow
def test_cli_train_resume_and_errors(tmp_path, capsys):
    from torchslim.cli import run

    out = tmp_path / "run"
    assert run(["train", "--model", "digits-mlp", "--epochs", "1", "--out", str(out), "--device", "cpu"]) == 0
    for name in ("model.pt2", "model.pt2.json", "model.safetensors", "checkpoint.pt", "metrics.jsonl"):
        assert (out / name).is_file(), name
    loaded = torchslim.load(out / "model.pt2")
    assert loaded(torch.randn(3, 1, 8, 8)).shape == (3, 10)
    assert run(["train", "--model", "digits-mlp", "--epochs", "2", "--out", str(out), "--resume", "--device", "cpu"]) == 0
    assert "2 epochs" in capsys.readouterr().out
    assert run(["train", "--model", "lenet-300-100", "--epochs", "2", "--out", str(out), "--resume"]) == 2
    assert "different model" in capsys.readouterr().err
    assert run(["train", "--model", "digits-mlp", "--out", str(tmp_path / "empty"), "--resume"]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_checkpoint_state_round_trips_through_the_stored_dict(small_digits, tmp_path):
    from torchslim.train._checkpoint import TrainCheckpoint

    fit(zoo.create_model("digits-mlp"), small_digits, TrainConfig(epochs=1, checkpoint_every_steps=3), out_dir=tmp_path)
    stored = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    typed = TrainCheckpoint.from_checkpoint(stored)
    assert (typed.step, typed.progress.epoch, typed.progress.micro_batch) == (stored["step"], 1, 0)
    # the typed object writes back exactly the stored keys (format version 1), nothing lost or added
    assert typed.to_checkpoint().keys() == stored.keys() - {"format", "version"}
    assert TrainCheckpoint.from_checkpoint(typed.to_checkpoint()) == typed
