"""Pruning: the model really changes as configured, nothing is left behind, round trips hold."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.utils.prune as torch_prune

from torchslim.core.step import StepContext
from torchslim.data import load_data
from torchslim.errors import ConfigError
from torchslim.prune import (
    ChannelPruneConfig,
    GlobalPruneConfig,
    MagnitudePruneConfig,
    channel_counts,
    leftover_masks,
    prune,
    recalibrate_batchnorm,
    run_step,
    validate_step,
    zero_fraction,
)
from torchslim.zoo import create_model


@pytest.fixture(scope="module")
def digits():
    return load_data("digits")


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_pre_hooks and not m._forward_hooks for m in model.modules())


@pytest.mark.parametrize("method", ["magnitude", "global"])
def test_unstructured_pruning_is_permanent_and_exact(method):
    torch.manual_seed(0)
    model = create_model("digits-cnn").eval()
    original = copy.deepcopy(model.state_dict())
    pruned = prune(model, {"method": method, "ratio": 0.6})
    assert zero_fraction(pruned) == pytest.approx(0.6, abs=1e-3)
    assert leftover_masks(pruned) == [] and _no_hooks(pruned)
    assert set(pruned.state_dict()) == set(original)  # no weight_orig / weight_mask keys
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in original.items())  # input untouched
    if method == "magnitude":  # same ratio in every layer
        for layer in (pruned.features[0][0], pruned.classifier[2]):
            assert (layer.weight == 0).float().mean().item() == pytest.approx(0.6, abs=1e-3)


def test_global_matches_torch_global_unstructured():
    torch.manual_seed(0)
    model = create_model("digits-mlp").eval()
    ours = prune(model, GlobalPruneConfig(ratio=0.7))
    reference = copy.deepcopy(model)
    layers = [m for m in reference.modules() if isinstance(m, nn.Linear)]
    torch_prune.global_unstructured([(m, "weight") for m in layers], pruning_method=torch_prune.L1Unstructured, amount=0.7)
    for m in layers:
        torch_prune.remove(m, "weight")
    for a, b in zip(ours.state_dict().values(), reference.state_dict().values(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.slow
def test_iterative_schedule_keeps_zeros_through_finetuning(digits):
    torch.manual_seed(0)
    model = create_model("digits-mlp").eval()
    config = MagnitudePruneConfig(ratio=0.8, iterations=2, finetune_epochs=1)
    pruned = prune(model, config, data=digits)
    # fine-tuning moved the surviving weights but no pruned weight came back
    assert zero_fraction(pruned) == pytest.approx(0.8, abs=1e-3)
    assert leftover_masks(pruned) == [] and _no_hooks(pruned)


def test_layer_types_and_ignore_limit_what_is_pruned():
    model = create_model("digits-cnn").eval()
    pruned = prune(model, MagnitudePruneConfig(ratio=0.5, layer_types=["linear"], ignore=["classifier.4"]))
    assert (pruned.features[0][0].weight == 0).sum() == 0  # conv untouched
    assert (pruned.classifier[4].weight == 0).sum() == 0  # ignored
    assert (pruned.classifier[2].weight == 0).float().mean().item() == pytest.approx(0.5, abs=1e-3)


def test_sparse_file_round_trips_and_is_smaller(tmp_path):
    from safetensors.torch import save_file

    from torchslim import load
    from torchslim.share import save_tslim

    pruned = prune(create_model("digits-cnn").eval(), {"method": "global", "ratio": 0.9})
    x = torch.randn(4, 1, 8, 8)
    sparse = save_tslim(pruned, tmp_path / "w.tslim", example_inputs=(x[:2],))
    dense = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in pruned.state_dict().items()}, str(dense))
    assert sparse.stat().st_size < 0.25 * dense.stat().st_size
    assert torch.equal(load(sparse)(x), pruned(x))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet-mini", "tiny-transformer"])
def test_channel_pruning_removes_channels_and_exports(name, tmp_path):
    from torchslim.artifacts import load, save_exported

    torch.manual_seed(0)
    model = create_model(name).eval()
    pruned = prune(model, ChannelPruneConfig(ratio=0.5))
    before, after = channel_counts(model), channel_counts(pruned)
    assert _params(pruned) < 0.5 * _params(model)
    assert sum(after.values()) < sum(before.values())
    classifier = "fc" if name == "resnet-mini" else "head"
    assert after[classifier] == before[classifier] == 10  # the classes are kept
    if name == "tiny-transformer":
        attention = pruned.layers[0].attn
        assert attention.heads == 2 and attention.q.out_features == 2 * 16  # whole heads removed
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        expected = pruned(x)
    assert expected.shape == (3, 10) and _no_hooks(pruned)
    artifact = save_exported(pruned, tmp_path / "pruned.pt2", (x,))
    assert torch.allclose(load(artifact)(x), expected, atol=1e-5)


def test_channel_pruning_mlp_with_taylor_and_recalibration(digits):
    torch.manual_seed(0)
    model = create_model("digits-mlp").eval()
    pruned = prune(model, {"method": "channel", "ratio": 0.5, "importance": "taylor", "scope": "global"}, data=digits)
    assert _params(pruned) < _params(model)
    assert pruned(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_recalibrate_batchnorm_restores_statistics(digits):
    model = create_model("digits-cnn").eval()
    bn = model.features[0][1]
    bn.running_mean.fill_(123.0)
    assert recalibrate_batchnorm(model, digits, batches=4) == 3
    assert bn.running_mean.abs().max() < 50 and bn.momentum == 0.1 and not model.training
    assert bn.num_batches_tracked.item() == 4


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"method": "channel", "ratio": 1.0}, "ratio"),
        ({"method": "magnitude", "ratio": -0.1}, "ratio"),
        ({"method": "magnitude", "importance": "taylor"}, "importance"),
        ({"method": "fancy"}, "fancy"),
        ({"method": "global", "pruning_ratio": 0.5}, "pruning_ratio"),
    ],
)
def test_bad_options_raise_config_error(options, fragment):
    with pytest.raises(ConfigError, match=fragment):
        validate_step(options)


def test_unprunable_layers_are_named():
    model = create_model("digits-cnn").eval()
    with pytest.raises(ConfigError, match=r"'features.0.1' \(BatchNorm2d\) cannot be pruned"):
        prune(model, {"method": "channel", "layer_ratios": {"features.0.1": 0.5}})
    with pytest.raises(ConfigError, match="no module named 'nope'"):
        prune(model, {"method": "magnitude", "ignore": ["nope"]})
    with pytest.raises(ConfigError, match="no conv layers"):
        prune(create_model("digits-mlp"), {"method": "magnitude", "layer_types": ["conv"]})
    with pytest.raises(ConfigError, match="needs data"):
        prune(model, {"method": "channel", "importance": "taylor"})


def test_run_step_notes_are_honest(digits):
    model = create_model("digits-mlp").eval()
    ctx = StepContext(data=digits, device=torch.device("cpu"), teacher=model, work_dir=None,
                      example_inputs=digits.example_inputs(2), log=lambda _m: None)
    out = run_step(model, validate_step({"method": "magnitude", "ratio": 0.5}), ctx)
    assert zero_fraction(out.model) == pytest.approx(0.5, abs=1e-3)
    assert "no speed-up" in out.notes[0] and "50.0%" in out.notes[0]
    out = run_step(model, validate_step({"method": "channel", "ratio": 0.5}), ctx)
    assert _params(out.model) < _params(model) and "channels removed" in out.notes[0]


class _FixedReshape(nn.Module):
    """Reshapes to a hard-coded width: channel pruning cannot stay consistent."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(64, 64)
        self.b = nn.Linear(16, 10)

    def forward(self, x):
        return self.b(self.a(x.flatten(1)).view(x.shape[0], 4, 16)).mean(1)


def test_unfollowable_reshape_fails_loudly():
    from torchslim.errors import UnsupportedError

    model = _FixedReshape()
    with pytest.raises(UnsupportedError, match="prune.ignore"):
        prune(model, {"method": "channel", "ratio": 0.5}, example_inputs=(torch.randn(2, 1, 8, 8),))
    assert model.a.out_features == 64  # the caller's model is untouched
