from __future__ import annotations

import pytest
import torch

from torchslim import zoo
from torchslim.artifacts import load, save_exported
from torchslim.bench import accuracy
from torchslim.specs import load_model


@pytest.mark.parametrize("name", zoo.list_models())
def test_every_zoo_model_runs_and_exports(name, tmp_path):
    model = zoo.create_model(name).eval()
    x = model.example_inputs(3)
    assert model(*x).shape == (3, 10)
    fn = load(save_exported(model, tmp_path / f"{name}.pt2", model.example_inputs(2)))
    torch.testing.assert_close(fn(*x), model(*x), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name", zoo.list_models())
def test_every_zoo_model_trains_to_its_floor(name, digits):
    """Trained through the spec (so the cache is filled for the rest of the suite)."""
    handle = load_model(name, digits, log=lambda m: None)
    acc = accuracy(handle.model, digits.test)
    assert acc >= zoo.get_entry(name).min_test_accuracy, f"{name}: {acc:.4f}"


def test_list_models_pattern():
    assert zoo.list_models("digits-*") == ["digits-cnn", "digits-mlp"]
    assert "digits-cnn" in zoo.list_models()
