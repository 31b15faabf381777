"""Accuracy-aware fallback and SmoothQuant for static int8 (torchslim.quantize._fallback/_smooth)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

from torchslim.errors import ConfigError
from torchslim.quantize import StaticInt8Config, parse_config
from torchslim.quantize._fallback import fallback_search
from torchslim.quantize._smooth import SmoothedLinear, find_groups, smooth_, smoothing_scale
from torchslim.zoo.transformer import TinyTransformer

# --- the fallback loop, with a fake metric -----------------------------------------------------


def _fake_score(costs: dict[str, float], calls: list):
    """Metric = 1 - the summed cost of the layers still in int8 (points / 100)."""

    def score(kept):
        calls.append(kept)
        return 1.0 - sum(c for name, c in costs.items() if name not in kept) / 100, f"model{kept}"

    return score


def test_fallback_stops_once_within_target():
    costs = {"a": 1.0, "b": 0.6, "c": 0.2, "d": 0.1}
    calls: list = []
    result, model = fallback_search(["a", "b", "c", "d"], _fake_score(costs, calls), reference=1.0,
                                    target_drop=0.5, max_layers=8)
    # 1.9 pts -> a in float: 0.9 -> b in float: 0.3, within 0.5: stop before trying c.
    assert result.kept_in_float == ["a", "b"]
    assert [s.layer for s in result.steps] == ["a", "b"]
    assert result.quantized == pytest.approx(0.981) and result.final == pytest.approx(0.997)
    assert result.steps[0].metric_before == pytest.approx(0.981) and result.steps[0].metric_after == pytest.approx(0.991)
    assert result.within_target and model == "model('a', 'b')"
    assert calls == [(), ("a",), ("a", "b")]


def test_fallback_nothing_to_do_when_already_within():
    calls: list = []
    result, model = fallback_search(["a"], _fake_score({"a": 0.3}, calls), reference=1.0, target_drop=0.5, max_layers=8)
    assert result.steps == [] and result.kept_in_float == [] and model == "model()"
    assert "every layer stays int8" in result.notes()[0]


def test_fallback_ranks_layers_only_when_all_int8_misses_the_target():
    asked: list = []

    def ranking():
        asked.append(1)
        return ["a"]

    fallback_search(ranking, _fake_score({"a": 0.3}, []), reference=1.0, target_drop=0.5, max_layers=8)
    assert asked == []  # within target: no per-layer pass
    result, _ = fallback_search(ranking, _fake_score({"a": 0.9}, []), reference=1.0, target_drop=0.5, max_layers=8)
    assert asked == [1] and result.kept_in_float == ["a"]


def test_fallback_respects_the_layer_limit_and_says_so():
    costs = {"a": 1.0, "b": 1.0, "c": 1.0}
    result, model = fallback_search(["a", "b", "c"], _fake_score(costs, []), reference=1.0, target_drop=0.5, max_layers=2)
    assert result.kept_in_float == ["a", "b"] and not result.within_target
    assert model == "model('a', 'b')"
    note = result.notes()[0]
    assert "target not reached" in note and "Kept in float: a, b" in note and "a: 0.9700 -> 0.9800" in note


def test_fallback_returns_a_layer_that_did_not_help_to_int8():
    # "b" is ranked second but costs nothing (a misleading proxy): it goes back to int8.
    costs = {"a": 1.0, "b": 0.0, "c": 0.8}
    result, model = fallback_search(["a", "b", "c"], _fake_score(costs, []), reference=1.0, target_drop=0.5, max_layers=8)
    assert result.kept_in_float == ["a", "c"]
    assert [(s.layer, s.kept) for s in result.steps] == [("a", True), ("b", False), ("c", True)]
    assert model == "model('a', 'c')"
    assert "b: 0.9920 -> 0.9920 (no gain, back to int8)" in result.notes()[0]


def test_config_options_validate():
    config = parse_config({"method": "static", "smoothquant": "auto", "fallback": "auto", "fallback_max_layers": 3})
    assert isinstance(config, StaticInt8Config) and config.smoothquant == "auto" and config.fallback == "auto"
    assert "fallback=auto" in config.describe()
    assert parse_config({"method": "static", "smoothquant": 0.5}).smoothquant == 0.5
    for bad in ({"smoothquant": 1.5}, {"smoothquant": "max"}, {"fallback": "always"}, {"fallback_max_layers": 0}):
        with pytest.raises(ConfigError):
            parse_config({"method": "static", **bad})


# --- SmoothQuant math ---------------------------------------------------------------------------


def _outlier_transformer() -> TinyTransformer:
    """A tiny transformer whose LayerNorms have a few huge channels (what real ones look like)."""
    torch.manual_seed(0)
    model = TinyTransformer(dim=32, depth=2, heads=4, ffn=64).eval()
    with torch.no_grad():
        for layer in model.layers:
            for norm in (layer.norm1, layer.norm2):
                norm.weight[:3] = 40.0
                norm.bias.normal_(0, 0.5)
    return model


def test_smoothing_keeps_the_float_outputs_and_folds_into_layernorm():
    model = _outlier_transformer()
    x = torch.randn(16, 1, 8, 8)
    reference = model(x)
    smoothed = copy.deepcopy(model)
    groups = smooth_(smoothed, (x[:2],), [(x,)], alpha=0.5)
    assert torch.allclose(smoothed(x), reference, atol=1e-5, rtol=1e-5)
    # Pre-norm: every LayerNorm-fed group folds (q/k/v share norm1, ffn.0 has norm2).
    assert [(g.linears, g.norm) for g in groups][:2] == [
        (["layers.0.attn.q", "layers.0.attn.k", "layers.0.attn.v"], "layers.0.norm1"),
        (["layers.0.ffn.0"], "layers.0.norm2"),
    ]
    assert not any(isinstance(m, SmoothedLinear) for m in smoothed.modules())
    # The fold is exactly W * s and LN / s with s from the observed maxima.
    group = groups[0]
    s = smoothing_scale(group.act_max, [model.layers[0].attn.q.weight, model.layers[0].attn.k.weight,
                                        model.layers[0].attn.v.weight], 0.5)
    assert torch.allclose(smoothed.layers[0].norm1.weight, model.layers[0].norm1.weight / s)
    assert torch.allclose(smoothed.layers[0].norm1.bias, model.layers[0].norm1.bias / s)
    assert torch.allclose(smoothed.layers[0].attn.k.weight, model.layers[0].attn.k.weight * s)
    # It did what it is for: the outlier channels of the LayerNorm output are evened out.
    ratio = lambda w: float(w.detach().abs().max() / w.detach().abs().median())  # noqa: E731
    assert ratio(smoothed.layers[0].norm1.weight) < ratio(model.layers[0].norm1.weight) / 3


def test_smoothing_scale_formula():
    act = torch.tensor([4.0, 1.0, 0.0])
    w = torch.tensor([[1.0, 4.0, 2.0], [0.5, 1.0, 1.0]])
    s = smoothing_scale(act, [w], alpha=0.5)
    assert torch.allclose(s, torch.tensor([2.0 / 1.0, 1.0 / 2.0, 1.0]))  # dead channel: 1


class _PostNorm(nn.Module):
    """BERT-style post-norm: the LayerNorm output feeds the residual too, so it cannot fold."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(16)
        self.fc = nn.Linear(16, 16)
        self.out = nn.Linear(16, 4)

    def forward(self, x):
        h = self.norm(x)
        return self.out(h + self.fc(h))


def test_post_norm_gets_an_explicit_multiply_and_the_same_outputs():
    torch.manual_seed(0)
    model = _PostNorm().eval()
    with torch.no_grad():
        model.norm.weight[:2] = 30.0
    x = torch.randn(8, 5, 16)
    assert [(g.linears, g.norm) for g in find_groups(model, (x[:2],))] == [(["fc"], None)]
    smoothed = copy.deepcopy(model)
    groups = smooth_(smoothed, (x[:2],), [(x,)], alpha="auto")
    assert isinstance(smoothed.fc, SmoothedLinear) and groups[0].alpha in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
    assert torch.equal(smoothed.norm.weight, model.norm.weight)  # the residual's input is untouched
    assert torch.allclose(smoothed(x), model(x), atol=1e-5, rtol=1e-5)


# --- for real -----------------------------------------------------------------------------------


def _step_context(bundle, model, tmp_path, budget=None):
    from torchslim.core.step import StepContext

    return StepContext(data=bundle, device=torch.device("cpu"), teacher=model, work_dir=tmp_path,
                       example_inputs=bundle.example_inputs(2, split="train"), log=lambda _m: None,
                       max_accuracy_drop=budget)


@pytest.mark.slow
# Each fallback try deep-copies the exported graph: torch's deprecated pytree constructor must not
# print its FutureWarning in the middle of the user's progress lines.
@pytest.mark.filterwarnings("error::FutureWarning")
@pytest.mark.parametrize("name", ["tiny-transformer", "resnet-mini"])
def test_static_int8_with_fallback_for_real(name, tmp_path):
    from torchslim.data import accuracy
    from torchslim.quantize import run_step, validate_step
    from torchslim.specs import resolve

    handle, bundle = resolve(name, "digits", log=lambda _m: None)
    model = handle.model.eval()
    # Target 0 points: any measured drop makes it try layers in float (at most 2).
    config = validate_step({"method": "static", "fallback": "auto", "fallback_target_drop": 0.0,
                            "fallback_max_layers": 2, "smoothquant": "auto"})
    out = run_step(model, config, _step_context(bundle, model, tmp_path, budget=1.0))
    result = out.facts["fallback"]  # the typed FallbackResult, not an attribute of the model
    assert not hasattr(out.model, "torchslim_fallback")
    assert result.metric == "accuracy" and result.target_drop == 0.0
    assert result.reference == pytest.approx(accuracy(model, bundle.val))
    # The record is what the returned model measures, and fallback never made it worse.
    assert accuracy(out.model, bundle.val) == pytest.approx(result.final)
    assert result.final >= result.quantized
    layers = dict(model.named_modules())
    assert all(step.layer in layers for step in result.steps) and len(result.steps) <= 2
    if result.quantized < result.reference:  # ranked only when all-int8 misses the target
        assert len(result.ranking) == sum(isinstance(m, (nn.Linear, nn.Conv2d)) for m in model.modules())
    else:
        assert result.ranking == [] and result.steps == []
    assert any(n.startswith("fallback: float accuracy") for n in out.notes)
    from torchslim.report import (
        Candidate,  # the report's field takes the quantizer's record as it is
    )

    assert Candidate(name="c", fallback=result).fallback.kept_in_float == result.kept_in_float
    if result.steps:
        assert result.steps[0].metric_before == result.quantized
    if name == "tiny-transformer":
        assert any(n.startswith("SmoothQuant on 8 LayerNorm-fed Linear layers in 4 groups") for n in out.notes)


@pytest.mark.slow
@pytest.mark.heavy  # minutes on 2 cores: `make test-heavy`
def test_minilm_static_int8_fidelity_with_smoothquant_and_fallback(minilm, tmp_path):
    from torchslim.data import fidelity, predict
    from torchslim.quantize import quantize, run_step, validate_step

    handle, bundle = minilm
    model = handle.model
    reference, _ = predict(model, bundle.test)
    plain = fidelity(quantize(model, {"method": "static"}, data=bundle), reference, bundle.test)
    config = validate_step({"method": "static", "smoothquant": "auto", "fallback": "auto", "fallback_max_layers": 4})
    out = run_step(model, config, _step_context(bundle, model, tmp_path, budget=1.0))
    tuned = fidelity(out.model, reference, bundle.test)
    print(f"MiniLM static int8 fidelity on test: plain {plain:.4f}, smoothquant+fallback {tuned:.4f}; "
          f"kept in float: {out.facts['fallback'].kept_in_float}")
    assert tuned >= 0.99 and tuned >= plain - 0.002
    assert any("Kept in float" in n or "every layer stays int8" in n for n in out.notes)


class _NormDropout(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(8)
        self.drop = nn.Dropout(0.1)
        self.q, self.k = nn.Linear(8, 8), nn.Linear(8, 8)

    def forward(self, x):
        h = self.drop(self.norm(x))
        return self.q(h) * self.k(h)


def test_a_dropout_between_layernorm_and_linears_still_folds():
    torch.manual_seed(0)
    model = _NormDropout().eval()
    x = torch.randn(4, 3, 8)
    groups = find_groups(model, (x[:2],))
    assert [(g.linears, g.norm) for g in groups] == [(["q", "k"], "norm")]
    smoothed = copy.deepcopy(model)
    smooth_(smoothed, (x[:2],), [(x,)], alpha=0.5)
    assert torch.allclose(smoothed(x), model(x), atol=1e-5, rtol=1e-5)
