"""Accuracy and fidelity have one implementation (``torchslim.data``); the training loop's
DDP-aware ``evaluate`` / ``evaluate_fidelity`` sum its counts over ranks and divide the same way."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from torch.utils.data import TensorDataset

from torchslim.data import accuracy, fidelity
from torchslim.errors import DataError
from torchslim.train import evaluate
from torchslim.train._loop import evaluate_fidelity


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    x = torch.randn(50, 6)
    y = torch.randint(0, 3, (50,))
    model = nn.Sequential(nn.Linear(6, 3), nn.Dropout(0.5))  # dropout: scores differ unless in eval mode
    return model, TensorDataset(x, y)


def test_accuracy_is_the_same_in_data_and_in_the_training_loop(setup):
    model, dataset = setup
    model.train()
    expected = float((model.eval()(dataset.tensors[0]).argmax(-1) == dataset.tensors[1]).float().mean())
    model.train()
    assert accuracy(model, dataset, batch_size=16) == pytest.approx(expected)
    assert model.training  # scored in eval mode, given back as it came
    assert evaluate(model, dataset, device=torch.device("cpu"), batch_size=7) == pytest.approx(expected)
    assert model.training


def test_fidelity_is_the_same_in_data_and_in_the_training_loop(setup):
    model, dataset = setup
    model.train()
    reference = nn.Sequential(nn.Linear(6, 3))
    with torch.no_grad():
        ref_out = reference(dataset.tensors[0])
    from_data = fidelity(model, ref_out, dataset)
    assert from_data == pytest.approx(fidelity(model, reference, dataset))
    assert evaluate_fidelity(model, dataset, ref_out, device=torch.device("cpu")) == pytest.approx(from_data)
    assert fidelity(model, model, dataset) == pytest.approx(1.0)  # eval mode: dropout off, deterministic
    with pytest.raises(DataError, match="reference outputs"):
        fidelity(model, ref_out[:10], dataset)


def test_an_empty_split_is_a_data_error_not_a_score_of_zero(setup):
    model, _ = setup
    empty = TensorDataset(torch.zeros(0, 6), torch.zeros(0, dtype=torch.long))
    for score in (lambda: accuracy(model, empty), lambda: evaluate(model, empty, device=torch.device("cpu")),
                  lambda: fidelity(model, torch.zeros(0, 3), empty)):
        with pytest.raises(DataError, match="data set is empty"):
            score()


def test_the_task_scorer_is_accuracy_or_fidelity_to_the_reference(setup):
    from torchslim.data import scorer

    model, dataset = setup
    assert scorer("classification", dataset)(model) == accuracy(model, dataset)
    other = nn.Sequential(nn.Linear(6, 3))
    by_model = scorer("embedding", dataset, other)  # the reference's outputs are computed once, here
    assert by_model(other) == pytest.approx(1.0)
    assert by_model(model) == pytest.approx(fidelity(model, other, dataset))
    with pytest.raises(ValueError, match="reference"):
        scorer("embedding", dataset)
