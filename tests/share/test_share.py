"""Weight sharing, bits per weight, the share/encode recipe steps and the ``share`` CLI."""

from __future__ import annotations

import pytest
import torch

from torchslim.cli import run
from torchslim.errors import ConfigError
from torchslim.pipeline.deep_compression import magnitude_prune, sparsity
from torchslim.report import load_report
from torchslim.share import (
    ShareConfig,
    bits_per_weight,
    distinct_values,
    run_encode_step,
    run_step,
    share,
    stage_bits,
    validate_encode_step,
    validate_step,
)
from torchslim.share._kmeans import kmeans_1d
from torchslim.zoo import create_model


def test_kmeans_is_vectorized_and_sensible():
    torch.manual_seed(0)
    values = torch.cat([torch.randn(5000) * 0.1 - 1, torch.randn(5000) * 0.1 + 1])
    centroids, assignment = kmeans_1d(values, 2)
    assert torch.allclose(centroids, torch.tensor([-1.0, 1.0], dtype=torch.float64), atol=0.02)
    assert assignment.shape == values.shape and set(assignment.unique().tolist()) == {0, 1}
    few = torch.tensor([3.0, 1.0, 3.0])
    assert kmeans_1d(few, 8)[0].tolist() == [1.0, 3.0]  # already shared: kept exactly


@pytest.mark.parametrize("bits", [1, 3, 5, 8])
def test_share_limits_distinct_values_and_keeps_zeros(bits):
    torch.manual_seed(0)
    model = create_model("lenet-300-100").eval()
    with torch.no_grad():
        model.net[1].weight.mul_(torch.rand_like(model.net[1].weight) < 0.3)
    before = model.net[1].weight.clone()
    shared = share(model, ShareConfig(bits=bits))
    assert torch.equal(model.net[1].weight, before)  # the caller's model is untouched
    counts = distinct_values(shared)
    assert len(counts) == 6 and max(counts.values()) <= 2**bits
    assert torch.equal(shared.net[1].weight == 0, before == 0)  # pruned zeros stay, no new ones
    x = torch.randn(4, 1, 8, 8)
    error = (shared(x) - model(x)).abs().max() / model(x).abs().max()
    assert error < {1: 2.0, 3: 0.5, 5: 0.1, 8: 0.02}[bits]


def test_bits_per_weight_drops_stage_by_stage():
    torch.manual_seed(0)
    model = create_model("lenet-300-100").eval()
    pruned = magnitude_prune(model, 0.9)
    assert sparsity(pruned) == pytest.approx(0.9, abs=0.01)
    assert not any(torch.signbit(m.weight[m.weight == 0]).any() for m in pruned.modules() if hasattr(m, "weight"))
    shared = share(pruned, {"bits": 4})
    rows = stage_bits({"fp32": model, "pruned": pruned, "shared": shared})
    bits = [r.bits_per_weight for r in rows]
    assert [r.stage for r in rows] == ["fp32", "pruned", "shared", "huffman"]
    assert bits[0] == 32.0 and bits[0] > bits[1] > bits[2] > bits[3]
    assert bits_per_weight(shared, coding="huffman") < 2.0


@pytest.mark.parametrize("options", [{"bits": 0}, {"bits": 9}, {"bits": "five"}, {"bitz": 4}])
def test_bad_share_options_raise_config_error(options):
    with pytest.raises(ConfigError, match="bit"):
        validate_step(options)


def test_encode_step_options():
    assert validate_encode_step("huffman").method == "huffman"
    assert validate_encode_step({"method": "huffman"}).method == "huffman"
    with pytest.raises(ConfigError, match="method"):
        validate_encode_step("gzip")
    with pytest.raises(ConfigError):
        validate_encode_step({"method": "huffman", "level": 3})


def test_share_and_encode_steps_write_a_tslim(tmp_path):
    from torchslim.core.step import StepContext
    from torchslim.data import load_data

    data = load_data("digits")
    model = create_model("digits-mlp").eval()
    ctx = StepContext(data=data, device=torch.device("cpu"), teacher=model, work_dir=tmp_path,
                      example_inputs=data.example_inputs(2), log=lambda _m: None)
    shared = run_step(model, validate_step({"bits": 3}), ctx).model
    out = run_encode_step(shared, validate_encode_step("huffman"), ctx)
    assert out.runtime == "tslim" and out.artifact == tmp_path / "model.tslim" and out.artifact.exists()
    assert any("no speed-up" in note for note in out.notes)
    x = data.example_inputs(4)
    from torchslim.artifacts import load

    assert torch.equal(load(out.artifact)(*x), shared(*x))
    # 3-bit indices instead of 32-bit floats: at least 5x smaller than the fp32 weights.
    assert out.artifact.stat().st_size * 5 < sum(p.numel() for p in model.parameters()) * 4


@pytest.mark.parametrize("args", [["--bits", "9"], ["--bits", "0"], ["--bits", "4", "--prune-ratio", "1.5"]])
def test_cli_rejects_bad_values_with_exit_2(args, tmp_path):
    assert run(["share", "--model", "lenet-300-100", "--out", str(tmp_path), *args]) == 2


@pytest.mark.slow
def test_cli_share_writes_tslim_through_the_pipeline(tmp_path, capsys):
    out = tmp_path / "run"
    code = run(["share", "--model", "lenet-300-100", "--bits", "4", "--prune-ratio", "0.8", "--out", str(out),
                "--device", "cpu", "--batch-sizes", "1"])
    assert code == 0
    assert "share-4bit" in capsys.readouterr().out
    report = load_report(out)
    cand = report.candidate("share-4bit")
    assert [s.split("(")[0] for s in cand.steps] == ["prune", "share", "encode"]
    tslim = out / cand.artifact
    assert tslim.suffix == ".tslim" and (out / (cand.artifact + ".json")).exists()
    assert tslim.stat().st_size * 10 < report.baseline.metrics.size_bytes


def test_share_folds_torch_pruning_masks():
    import torch.nn.utils.prune as torch_prune

    model = create_model("lenet-300-100").eval()
    with torch.no_grad():  # (a masked weight made under autograd cannot be deep-copied at all)
        torch_prune.l1_unstructured(model.net[1], "weight", amount=0.5)  # mask + forward pre-hook
    shared = share(model, {"bits": 2})
    assert not hasattr(shared.net[1], "weight_orig") and not shared.net[1]._forward_pre_hooks
    assert distinct_values(shared)["net.1.weight"] <= 4
    assert float((shared.net[1].weight == 0).float().mean()) == pytest.approx(0.5, abs=0.01)


def test_centroid_finetuning_keeps_the_sharing():
    from torchslim.data import load_data

    torch.manual_seed(0)
    model = magnitude_prune(create_model("digits-mlp").eval(), 0.5)
    with pytest.raises(ConfigError, match="needs data"):
        share(model, {"bits": 3, "finetune_epochs": 1})
    plain = share(model, {"bits": 3})
    tuned = share(model, {"bits": 3, "finetune_epochs": 1, "lr": 0.01}, data=load_data("digits"))
    assert max(distinct_values(tuned).values()) <= 8
    assert torch.equal(tuned.net[1].weight == 0, model.net[1].weight == 0)
    assert not torch.equal(tuned.net[1].weight, plain.net[1].weight)  # the centroids moved
    assert [n for n, _ in tuned.named_parameters()] == [n for n, _ in model.named_parameters()]
