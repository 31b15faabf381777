"""TrainConfig: keyword construction, YAML loading, and errors that name the bad field."""

from __future__ import annotations

import pytest

from torchslim.errors import ConfigError
from torchslim.train import TrainConfig, load_train_config


def test_keyword_construction_keeps_working():
    config = TrainConfig(epochs=3, seed=7, lr=0.01, batch_size=32)
    assert (config.epochs, config.seed, config.lr, config.batch_size) == (3, 7, 0.01, 32)
    assert config.precision == "fp32" and config.grad_accum_steps == 1


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"learning_rate": 0.1}, "learning_rate"),
        ({"epochs": 0}, "epochs"),
        ({"optimizer": "lbfgs"}, "optimizer"),
        ({"precision": "fp8"}, "precision"),
        ({"schedule": "cyclic"}, "schedule"),
        ({"clip_grad_norm": -1.0}, "clip_grad_norm"),
        ({"clip_grad_norm": 1.0, "clip_grad_value": 0.5}, "clip_grad_value"),
    ],
)
def test_bad_keys_and_values_name_the_field(kwargs, field):
    with pytest.raises(ConfigError) as err:
        TrainConfig(**kwargs)
    assert field in err.value.message


def test_assignment_is_validated():
    config = TrainConfig()
    with pytest.raises(ConfigError, match="grad_accum_steps"):
        config.grad_accum_steps = 0


def test_yaml_file_with_overrides(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("epochs: 4\noptimizer: sgd\nprecision: bf16\nclip_grad_norm: 1.0\n")
    config = load_train_config(path, epochs=2, lr=None)
    assert (config.epochs, config.optimizer, config.precision, config.clip_grad_norm) == (2, "sgd", "bf16", 1.0)


def test_yaml_errors(tmp_path):
    bad_key = tmp_path / "bad.yaml"
    bad_key.write_text("epochs: 2\nwarmup: 3\n")
    with pytest.raises(ConfigError, match="warmup"):
        load_train_config(bad_key)
    not_mapping = tmp_path / "list.yaml"
    not_mapping.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_train_config(not_mapping)
    with pytest.raises(ConfigError, match="does not exist"):
        load_train_config(tmp_path / "missing.yaml")


def test_cli_rejects_bad_config_with_exit_2(tmp_path, capsys):
    from torchslim.cli import run

    path = tmp_path / "train.yaml"
    path.write_text("epochs: 1\nbatchsize: 8\n")
    assert run(["train", "--model", "digits-mlp", "--config", str(path), "--out", str(tmp_path / "run")]) == 2
    assert "batchsize" in capsys.readouterr().err
    assert run(["train", "--model", "digits-mlp", "--precision", "fp4", "--out", str(tmp_path / "run")]) == 2
    assert "precision" in capsys.readouterr().err
