"""Per-layer sensitivity: one row per layer, real accuracy drops, usable ratios and skip lists."""

from __future__ import annotations

import json

import pytest
import torch

from torchslim.data import load_data
from torchslim.errors import ConfigError
from torchslim.prune import (
    SensitivityResult,
    SensitivityRow,
    prune,
    ratios_from_sensitivity,
    sensitivity,
    skip_list_from_sensitivity,
    zero_fraction,
)
from torchslim.train import TrainConfig, fit
from torchslim.zoo import create_model


@pytest.fixture(scope="module")
def digits():
    return load_data("digits")


@pytest.fixture(scope="module")
def trained_mlp(digits):
    torch.manual_seed(0)
    model = create_model("digits-mlp")
    fit(model, digits, TrainConfig(epochs=4, seed=0))
    return model.eval()


def test_prune_sensitivity_table(digits, trained_mlp):
    result = sensitivity(trained_mlp, digits, ratios=(0.5, 0.95))
    assert [r.layer for r in result.rows] == ["net.1", "net.3", "net.5"]
    assert [r.params for r in result.rows] == [64 * 256, 256 * 128, 128 * 10]
    assert result.probes == ["0.5", "0.95"] and result.split == "val"
    # removing 95% of the classifier's weights must hurt; the drops are real measurements
    assert result.rows[2].drop["0.95"] > 5.0
    assert all(-5.0 < r.drop["0.5"] < 20.0 for r in result.rows)
    json.dumps(result.to_dict())  # plain data for plots
    assert "net.3" in result.to_table()


def test_max_layers_probes_the_largest_first(digits, trained_mlp):
    result = sensitivity(trained_mlp, digits, ratios=(0.5,), max_layers=2)
    assert sorted(r.layer for r in result.rows) == ["net.1", "net.3"]  # 16k and 32k weights; net.5 has 1.3k


def test_embedding_sensitivity_scores_fidelity_to_the_model_itself(digits, trained_mlp):
    """Embedding data has no labels: the score is fidelity to the undamaged outputs (1.0 at baseline)."""
    import dataclasses

    embedding = dataclasses.replace(digits, task="embedding")
    result = sensitivity(trained_mlp, embedding, ratios=(0.9,))
    assert result.baseline_accuracy == pytest.approx(1.0, abs=1e-5)
    assert all(r.drop["0.9"] > 0 for r in result.rows)  # zeroing 90% of a layer moves the outputs


def test_ratios_drive_per_layer_pruning(digits, trained_mlp):
    result = sensitivity(trained_mlp, digits, ratios=(0.5, 0.95))
    ratios = ratios_from_sensitivity(result, max_drop=1.0)
    assert set(ratios) == {"net.1", "net.3", "net.5"} and ratios["net.5"] in (0.0, 0.5)
    pruned = prune(trained_mlp, {"method": "magnitude", "ratio": 0.0, "layer_ratios": ratios})
    for name, ratio in ratios.items():
        assert zero_fraction(pruned, [name]) == pytest.approx(ratio, abs=1e-3)


def test_quantize_sensitivity_and_skip_list(digits, trained_mlp):
    result = sensitivity(trained_mlp, digits, mode="quantize")
    assert result.probes == ["int8"] and len(result.rows) == 3
    assert all(abs(r.drop["int8"]) < 3.0 for r in result.rows)  # int8 barely hurts an MLP layer
    assert skip_list_from_sensitivity(result, max_drop=5.0) == []


def test_channel_sensitivity_skips_the_classifier(digits, trained_mlp):
    result = sensitivity(trained_mlp, digits, method="channel", ratios=(0.9,))
    assert [r.layer for r in result.rows] == ["net.1", "net.3"]


def test_skip_list_uses_mildest_probe():
    result = SensitivityResult("prune", "magnitude", "val", 0.9, ["0.3", "0.9"], [
        SensitivityRow("a", "Linear", 10, {"0.3": 0.2, "0.9": 9.0}),
        SensitivityRow("b", "Linear", 10, {"0.3": 2.5, "0.9": 30.0}),
    ])
    assert skip_list_from_sensitivity(result, max_drop=1.0) == ["b"]
    assert ratios_from_sensitivity(result, max_drop=1.0) == {"a": 0.3, "b": 0.0}


def test_bad_sensitivity_input(digits, trained_mlp):
    with pytest.raises(ConfigError, match=r"'net.2' \(ReLU\) cannot be pruned"):
        sensitivity(trained_mlp, digits, layers=["net.2"])
    with pytest.raises(ConfigError, match=r"\[0, 1\)"):
        sensitivity(trained_mlp, digits, ratios=(1.0,))
    with pytest.raises(ConfigError, match="mode"):
        sensitivity(trained_mlp, digits, mode="distill")
