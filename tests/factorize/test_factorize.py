"""Low-rank factorization: exactness at full rank, real savings, export, config errors, CLI."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from torchslim.artifacts import load, save_exported
from torchslim.bench import count_macs, count_params
from torchslim.cli import run
from torchslim.errors import ConfigError, UnsupportedError
from torchslim.factorize import (
    FactorizeConfig,
    factorize,
    factorize_layer,
    plan,
    run_step,
    validate_step,
)
from torchslim.report import load_report
from torchslim.zoo import create_model


@pytest.mark.parametrize("layer,shape", [
    (nn.Linear(48, 20), (5, 48)),
    (nn.Conv2d(6, 10, 3, stride=2, padding=1), (2, 6, 9, 9)),
    (nn.Conv1d(4, 8, 5, padding=2, bias=False), (2, 4, 16)),
])
def test_full_rank_reproduces_the_layer(layer, shape):
    torch.manual_seed(0)
    x = torch.randn(*shape)
    full = min(layer.weight.shape[0], layer.weight[0].numel())
    pair = factorize_layer(layer, full)
    assert isinstance(pair, nn.Sequential) and len(pair) == 2
    torch.testing.assert_close(pair(x), layer(x), atol=1e-5, rtol=1e-4)


def test_truncation_error_follows_the_dropped_singular_values():
    torch.manual_seed(0)
    layer = nn.Linear(32, 32, bias=False)
    s = torch.linalg.svdvals(layer.weight.detach())
    low = factorize_layer(layer, 8)
    w = low[1].weight @ low[0].weight
    assert torch.linalg.matrix_norm(w - layer.weight, ord=2).item() == pytest.approx(s[8].item(), rel=1e-4)


def test_rank_ratio_shrinks_params_and_macs_and_exports(tmp_path):
    torch.manual_seed(0)
    model = create_model("digits-mlp").eval()
    x = torch.randn(2, 1, 8, 8)
    slim = factorize(model, FactorizeConfig(rank_ratio=0.25))
    assert count_params(slim) < 0.5 * count_params(model)
    assert count_macs(slim, (x[:1],)) < 0.5 * count_macs(model, (x[:1],))
    assert isinstance(model.net[1], nn.Linear)  # the original is untouched
    path = save_exported(slim, tmp_path / "slim.pt2", (x,))
    torch.testing.assert_close(load(path)(x), slim(x))


def test_energy_rule_and_skipping():
    torch.manual_seed(0)
    model = create_model("tiny-transformer").eval()
    rows = plan(model, {"energy": 0.5})
    assert all(0.5 <= r.energy_kept <= 1.0 + 1e-9 for r in rows)
    square = [r for r in plan(model, {"rank_ratio": 0.5}) if r.name.endswith("attn.q")]
    assert square and not square[0].factorized and "min_saving" in square[0].reason  # 64x64 at r=32 saves nothing
    slim = factorize(model, {"energy": 0.5})
    assert count_params(slim) < count_params(model)
    with pytest.raises(UnsupportedError, match="rank_ratio"):
        factorize(model, {"energy": 1.0})


def test_conv_model_keeps_working():
    torch.manual_seed(0)
    model = create_model("resnet-mini").eval()
    x = torch.randn(2, 1, 8, 8)
    with pytest.raises(UnsupportedError, match="would change no layer"):  # full rank saves nothing
        factorize(model, {"rank_ratio": 1.0, "min_saving": 0.0})
    slim = factorize(model, {"rank_ratio": 0.3})
    assert count_params(slim) < count_params(model) and slim(x).shape == (2, 10)


@pytest.mark.parametrize("options,field", [
    ({"rank_ratio": 0}, "rank_ratio"), ({"rank_ratio": 1.5}, "rank_ratio"), ({"energy": 0}, "energy"),
    ({"energy": 1.01}, "energy"), ({"rank_ratio": 0.5, "energy": 0.9}, "not both"), ({"rank": 4}, "rank"),
    ({"finetune_epochs": -1}, "finetune_epochs"),
])
def test_bad_options_raise_config_error(options, field):
    with pytest.raises(ConfigError, match=field):
        validate_step(options)


def test_step_contract(tmp_path):
    from torchslim.core.step import StepContext
    from torchslim.data import load_data

    data = load_data("digits")
    model = create_model("digits-mlp").eval()
    ctx = StepContext(data=data, device=torch.device("cpu"), teacher=model, work_dir=tmp_path,
                      example_inputs=data.example_inputs(2), log=lambda _m: None)
    out = run_step(model, validate_step({"rank_ratio": 0.2}), ctx)
    assert count_params(out.model) < count_params(model) and "factorized 3 layers" in out.notes[0]


@pytest.mark.parametrize("args", [["--rank-ratio", "2"], ["--energy", "0"], ["--rank-ratio", "0.5", "--energy", "0.9"]])
def test_cli_rejects_bad_values_with_exit_2(args, tmp_path):
    assert run(["factorize", "--model", "digits-mlp", "--out", str(tmp_path), *args]) == 2


@pytest.mark.slow
def test_cli_factorize_writes_artifact(tmp_path, capsys):
    out = tmp_path / "run"
    assert run(["factorize", "--model", "digits-mlp", "--rank-ratio", "0.25", "--finetune-epochs", "1",
                "--out", str(out), "--device", "cpu", "--batch-sizes", "1"]) == 0
    cand = load_report(out).candidate("factorize")
    assert cand.status == "ok" and (out / cand.artifact).exists() and (out / "report.json").exists()
    assert any("factorized" in n for n in cand.note_texts("technique"))
    assert "factorize" in capsys.readouterr().out


def test_layers_whose_weight_another_module_reads_are_left_alone_and_said_so():
    """MultiheadAttention reads out_proj.weight itself, TransformerEncoderLayer's inference fast
    path reads linear1/linear2, and a tied weight belongs to two modules: replacing any of them
    by two thin layers would break the reader (issue 22), so the plan keeps them, with the reason."""
    from torchslim.factorize import plan, read_elsewhere

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(20, 32)
            self.encoder = nn.TransformerEncoderLayer(32, 2, 64, batch_first=True)
            self.decode = nn.Linear(32, 20, bias=False)
            self.decode.weight = self.embed.weight
            self.ffn = nn.Linear(32, 32)

        def forward(self, ids):
            return self.decode(self.ffn(self.encoder(self.embed(ids))))

    model, ids = Model().eval(), torch.randint(0, 20, (2, 5))
    reasons = read_elsewhere(model, (ids,))
    assert set(reasons) == {"encoder.self_attn.out_proj", "encoder.linear1", "encoder.linear2", "decode"}
    rows = {p.name: p for p in plan(model, {"rank_ratio": 0.25}, (ids,))}
    assert rows["ffn"].factorized and not rows["decode"].factorized
    assert "tied to embed.weight" in rows["decode"].reason
    assert "MultiheadAttention" in rows["encoder.self_attn.out_proj"].reason
    slim = factorize(model, {"rank_ratio": 0.25})
    assert slim.decode.weight is slim.embed.weight and isinstance(slim.ffn, nn.Sequential)
    with torch.no_grad():
        assert slim(ids).shape == model(ids).shape
