"""Batch-norm helpers (fold, insert, recalibrate) and weight-init schemes."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from torch.utils.data import TensorDataset

from torchslim import zoo
from torchslim.errors import ConfigError, UnsupportedError
from torchslim.train.batchnorm import fold_batchnorm, insert_batchnorm, recalibrate_batchnorm
from torchslim.train.init import init_weights


def _randomize_bn(model: nn.Module) -> None:
    """Non-trivial BN statistics and affine parameters, so folding has real work to do."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)


def _count_bn(model: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@pytest.mark.parametrize("name", ["digits-cnn", "resnet-mini"])
def test_fold_batchnorm_keeps_outputs_within_tolerance(name):
    torch.manual_seed(0)
    model = zoo.create_model(name).eval()
    _randomize_bn(model)
    x = torch.randn(16, 1, 8, 8)
    folded = fold_batchnorm(model)
    assert _count_bn(folded) == 0 < _count_bn(model)  # every conv->bn pair folded (resnet shortcuts too)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-5)
    assert _count_bn(model) > 0  # the original is untouched


def test_fold_without_batchnorm_is_an_error():
    with pytest.raises(UnsupportedError, match="nothing to fold"):
        fold_batchnorm(zoo.create_model("digits-mlp"))


def test_insert_batchnorm_after_named_layers():
    torch.manual_seed(0)
    model = zoo.create_model("digits-mlp")
    insert_batchnorm(model, ["net.1", "net.3"])
    assert isinstance(model.net[1], nn.Sequential) and isinstance(model.net[1][1], nn.BatchNorm1d)
    assert model.net[3][1].num_features == 128
    assert model(torch.randn(4, 1, 8, 8)).shape == (4, 10)
    with pytest.raises(ConfigError, match="no module named 'fc9'"):
        insert_batchnorm(model, ["fc9"])
    with pytest.raises(ConfigError, match="ReLU"):
        insert_batchnorm(model, ["net.2"])


def test_recalibrate_batchnorm_matches_the_data_statistics():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4))
    x = torch.randn(512, 1, 8, 8) * 3 + 1
    dataset = TensorDataset(x, torch.zeros(512, dtype=torch.long))
    weight_before = model[0].weight.clone()
    assert recalibrate_batchnorm(model, dataset, batches=8, batch_size=64) == 1
    with torch.no_grad():
        act = model[0](x)
    torch.testing.assert_close(model[1].running_mean, act.mean(dim=(0, 2, 3)), rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(model[1].running_var, act.var(dim=(0, 2, 3)), rtol=2e-2, atol=1e-3)
    assert torch.equal(model[0].weight, weight_before) and not model.training
    assert model[1].momentum == 0.1  # restored


def test_recalibrate_batchnorm_with_nothing_to_do_returns_zero_and_touches_nothing():
    """The one behaviour (prune re-exports this function): no BN, or no batches, is not an error."""
    dataset = TensorDataset(torch.randn(64, 6), torch.zeros(64, dtype=torch.long))
    plain = nn.Sequential(nn.Linear(6, 4), nn.ReLU()).train()
    assert recalibrate_batchnorm(plain, dataset) == 0
    assert plain.training  # untouched, mode included
    with_bn = nn.Sequential(nn.Linear(6, 4), nn.BatchNorm1d(4)).train()
    with_bn[1].running_mean.fill_(7.0)
    assert recalibrate_batchnorm(with_bn, dataset, batches=0) == 0
    assert torch.all(with_bn[1].running_mean == 7.0) and with_bn.training
    untracked = nn.Sequential(nn.Linear(6, 4), nn.BatchNorm1d(4, track_running_stats=False))
    assert recalibrate_batchnorm(untracked, dataset) == 0


def test_recalibrate_batchnorm_takes_a_bundle_s_train_split_and_is_the_one_prune_uses():
    from torchslim.data import DataBundle
    from torchslim.prune import recalibrate_batchnorm as prune_recalibrate

    assert prune_recalibrate is recalibrate_batchnorm
    train = TensorDataset(torch.randn(128, 6) * 2 + 5, torch.zeros(128, dtype=torch.long))
    other = TensorDataset(torch.randn(16, 6) - 100, torch.zeros(16, dtype=torch.long))  # never used
    model = nn.Sequential(nn.BatchNorm1d(6))
    bundle = DataBundle("t", train, other, other)
    assert recalibrate_batchnorm(model, bundle, batches=2, batch_size=64, seed=3) == 1
    torch.testing.assert_close(model[0].running_mean, train.tensors[0].mean(dim=0), rtol=0, atol=1e-4)
    assert not model.training


@pytest.mark.parametrize(
    "scheme, expected_std",
    [
        ("xavier_uniform", (2 / (400 + 300)) ** 0.5),
        ("xavier_normal", (2 / (400 + 300)) ** 0.5),
        ("kaiming_uniform", (2 / 400) ** 0.5),
        ("kaiming_normal", (2 / 400) ** 0.5),
    ],
)
def test_init_schemes_give_the_expected_statistics(scheme, expected_std):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(400, 300), nn.BatchNorm1d(300))
    nn.init.normal_(model[1].weight)
    assert init_weights(model, scheme) == 2
    w = model[0].weight.detach()
    assert float(w.std()) == pytest.approx(expected_std, rel=0.03)
    assert abs(float(w.mean())) < 0.1 * expected_std
    assert torch.all(model[0].bias == 0)
    assert torch.all(model[1].weight == 1) and torch.all(model[1].bias == 0)


def test_orthogonal_init_is_orthogonal():
    model = nn.Linear(64, 64)
    init_weights(model, "orthogonal")
    torch.testing.assert_close(model.weight @ model.weight.T, torch.eye(64), rtol=0, atol=1e-5)


def test_init_errors():
    with pytest.raises(ConfigError, match="Unknown weight init"):
        init_weights(nn.Linear(2, 2), "he")
    with pytest.raises(ConfigError, match="no Conv"):
        init_weights(nn.ReLU(), "orthogonal")
