"""What each technique did to the model (``Candidate.changes``) and up-front refusals said once
(``Report.refusals``, ``errors.RefusedError``).

The changes run the real techniques (channel pruning, factorization, static int8) through the
real ``optimize`` on a small MLP, and check the record against the saved artifact: a layer
recorded as pruned from 32 to N outputs has N outputs in the file. Refusals use fake steps.
"""

from __future__ import annotations

import io
import json

import pytest
import torch
from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console

from tests.pipeline.test_pipeline import FAKE_STEPS, fake_measure, trained  # noqa: F401  (trained is a fixture)
from torchslim.core.step import StepOutput
from torchslim.errors import RefusedError, UnsupportedError
from torchslim.pipeline import MeasureOptions, RunOptions, load_recipe, optimize
from torchslim.report import render_table
from torchslim.report._changes import changes_summary

RECIPE = {"candidates": [
    {"name": "pruned", "steps": [{"prune": {"method": "channel", "ratio": 0.5}}]},
    {"name": "lowrank", "steps": [{"factorize": {"rank_ratio": 0.25}}]},
    # eager: the compiled runtime static int8 picks by default costs ~30 s of torch.compile here.
    {"name": "int8", "steps": [{"quantize": {"method": "static", "calibration_batches": 2}}], "runtime": "eager"},
    {"name": "onnx-int8", "steps": [{"export": {"format": "onnx", "quantize": "dynamic"}}], "runtime": "onnxruntime"},
]}


@pytest.fixture(scope="module")
def changed(trained, tmp_path_factory):  # noqa: F811
    model, data = trained  # Flatten, Linear(64, 32) "1", ReLU, Linear(32, 10) "3"
    out = tmp_path_factory.mktemp("changes") / "run"
    report = optimize(model, data, RECIPE, run=RunOptions(out=out, device="cpu"),
                      measure=MeasureOptions(batch_sizes=(1,), measure_fn=fake_measure({})))
    return report, out


def _weights(run_dir, candidate) -> dict[str, torch.Size]:
    program = torch.export.load(run_dir / candidate.artifact)
    return {k: v.shape for k, v in program.state_dict.items()}


def _by_layer(candidate, kind):
    return {c.layer: c for c in candidate.changes if c.kind == kind}


@pytest.mark.slow  # one real optimize of four candidates (shared): ~20 s on an idle 2-core machine
def test_pruned_layers_are_recorded_with_the_widths_the_artifact_has(changed):
    report, run_dir = changed
    c = report.candidate("pruned")
    assert c.status == "ok", c.error
    pruned = _by_layer(c, "pruned")
    assert set(pruned) == {"1", "3"}  # the hidden Linear lost outputs, the head the same inputs
    kept = _weights(run_dir, c)["1.weight"][0]
    assert kept < 32 and pruned["1"].detail == f"out_features 32 -> {kept}"
    assert pruned["3"].detail == f"in_features 32 -> {kept}" and _weights(run_dir, c)["3.weight"] == (10, kept)
    assert all(x.step == "prune(method=channel, ratio=0.5)" for x in c.changes)
    assert changes_summary(c) == "pruned 2 layers"


@pytest.mark.slow  # one real optimize of four candidates (shared): ~20 s on an idle 2-core machine
def test_factorized_layers_are_recorded_with_their_rank(changed):
    report, run_dir = changed
    c = report.candidate("lowrank")
    assert c.status == "ok", c.error
    factorized = _by_layer(c, "factorized")
    assert factorized, c.changes
    shapes = _weights(run_dir, c)
    for layer, change in factorized.items():
        rank = shapes[f"{layer}.0.weight"][0]  # the first of the two thinner Linears
        assert f"rank {rank} " in change.detail + " " and rank < min(shapes[f"{layer}.1.weight"][0], 64)
    assert not any(c.kind == "pruned" for c in c.changes)


@pytest.mark.slow  # one real optimize of four candidates (shared): ~20 s on an idle 2-core machine
def test_static_int8_records_every_quantized_layer(changed):
    report, _ = changed
    c = report.candidate("int8")
    assert c.status == "ok", c.error
    quantized = _by_layer(c, "quantized")
    assert set(quantized) == {"1", "3"} and all("int8" in x.detail for x in quantized.values())
    assert changes_summary(c).startswith("int8 2 layers")


@pytest.mark.slow  # one real optimize of four candidates (shared): ~20 s on an idle 2-core machine
def test_an_exported_int8_file_says_how_it_stores_the_weights(changed):
    import onnx

    report, run_dir = changed
    c = report.candidate("onnx-int8")
    assert c.status == "ok", c.error
    stored = onnx.load(str(run_dir / c.artifact)).graph.initializer
    int8 = [t for t in stored if t.data_type == onnx.TensorProto.INT8 and len(t.dims) >= 2]
    assert len(int8) == 2  # both Linear weights
    assert [(x.layer, x.kind) for x in c.changes] == [("", "quantized")]
    assert f"{len(int8)} int8 weight tensors ({sum(t.dims[0] * t.dims[1] for t in int8):,} values)" in c.changes[0].detail


def test_the_diff_tells_sparsified_shared_cast_factorized_and_model_parameters():
    import copy

    import torch.nn as nn

    from torchslim.core.changes import diff, snapshot

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.token = nn.Parameter(torch.zeros(1, 1, 8))
            self.a, self.b, self.c, self.d = (nn.Linear(8, 8) for _ in range(4))

    torch.manual_seed(0)
    net = Net()
    before = snapshot(net)
    after = copy.deepcopy(net)
    with torch.no_grad():
        after.a.weight[:, :4] = 0  # half the weights zero
        after.b.weight.copy_(torch.floor(after.b.weight * 4) / 4 + 0.125)  # a handful of distinct values, none zero
        after.token.data = torch.zeros(1, 1, 4)
        after.d.bias.add_(1.0)  # retrained only: no change of form
        after.d.weight.copy_(torch.randn(8, 8))  # 64 weights, 64 distinct values: retrained, not shared
    after.c = nn.Sequential(nn.Linear(8, 2, bias=False), nn.Linear(2, 8)).to(torch.bfloat16)
    after.a.weight.data = after.a.weight.data  # same storage: still float32
    found = {c.layer: (c.kind, c.detail) for c in diff(before, after)}
    assert found["a"] == ("sparsified", "50.0% of weights zero (was 0.0%)")
    assert found["b"][0] == "shared" and "distinct values" in found["b"][1]
    assert found["c"] == ("factorized", "Linear 8x8 -> rank 2 (2x8 + 8x2)")
    assert found["token"] == ("pruned", "token 1x1x8 -> 1x1x4")
    assert "d" not in found
    cast = diff(before, copy.deepcopy(net).to(torch.bfloat16))
    assert {c.kind for c in cast} == {"cast"} and len(cast) == 5


@pytest.mark.slow  # one real optimize of four candidates (shared): ~20 s on an idle 2-core machine
def test_changes_are_in_report_json_html_and_table(changed):
    report, run_dir = changed
    saved = json.loads((run_dir / "report.json").read_text())  # written through the schema's validation
    assert saved["candidates"][0]["changes"][0] == {"step": "prune(method=channel, ratio=0.5)", "layer": "1",
                                                    "kind": "pruned", "detail": report.candidates[0].changes[0].detail}
    html = (run_dir / "report.html").read_text()
    assert html.count('<details class="changes">') == 4 and "out_features 32 -&gt; " in html
    buffer = io.StringIO()
    render_table(report, Console(file=buffer, width=120))
    assert "pruned: pruned 2 layers" in buffer.getvalue()
    assert report.baseline.changes == []


# --- refusals ---------------------------------------------------------------------------------

CALLS: list[str] = []


class KnobConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ratio: float = Field(0.5, ge=0, lt=1)
    ignore: list[str] = Field(default_factory=list)


REASON = "its heads cannot be removed one by one in this fake"


def _refusing_run(model, config, ctx):
    """Refuses layer "1" unless ignored, whatever the ratio; candidates named ok* it accepts (a
    fake stand-in for a model the technique can handle), destroying the model past ratio 0.6."""
    CALLS.append(ctx.work_dir.name)
    if not ctx.work_dir.name.startswith("ok") and "1" not in config.ignore:
        raise RefusedError("prune", block="'1' (Linear)", reason=REASON, way_out="list it under prune.ignore")
    if config.ratio > 0.6:
        with torch.no_grad():
            for p in model.parameters():
                p.zero_()
    return StepOutput(model=model)


TABLE = {**FAKE_STEPS, "prune": (lambda o: KnobConfig.model_validate(o or {}), _refusing_run)}


def test_refused_error_is_an_unsupported_error_that_names_block_and_way_out():
    e = RefusedError("prune", block="'attn' (MultiheadAttention)", reason="why.", way_out="use magnitude")
    assert isinstance(e, UnsupportedError)
    assert e.message == "prune: cannot handle 'attn' (MultiheadAttention): why. Way out: use magnitude."
    assert (e.technique, e.block, e.reason, e.way_out) == ("prune", "'attn' (MultiheadAttention)", "why.", "use magnitude")


@pytest.mark.slow  # trains the shared MLP and runs five fake candidates: ~10 s
def test_a_refusal_is_said_once_and_skips_the_family_at_every_strength(trained, tmp_path):  # noqa: F811
    model, data = trained
    CALLS.clear()
    recipe = {"candidates": [
        {"name": "ok-too-strong", "steps": [{"prune": {"ratio": 0.9}}]},  # outside budget: the edge search's pick
        {"name": "first", "steps": [{"prune": {"ratio": 0.5}}]},
        {"name": "weaker", "steps": [{"prune": {"ratio": 0.3}}, {"scale": {"factor": 1.0}}]},
        {"name": "after-scale", "steps": [{"scale": {"factor": 1.0}}, {"prune": {"ratio": 0.5}}]},
        {"name": "ignored", "steps": [{"prune": {"ratio": 0.5, "ignore": ["1"]}}]},
    ], "search": {"max_tries": 3}}
    report = optimize(model, data, load_recipe(recipe, step_table=TABLE), run=RunOptions(out=tmp_path / "run", device="cpu"),
                      measure=MeasureOptions(batch_sizes=(1,), measure_fn=fake_measure({})))
    by = {c.name: c for c in report.candidates}
    # ran: the accepted one, the first refused, the one with another step before it, the way out taken
    assert CALLS == ["ok-too-strong", "first", "after-scale", "ignored"]
    assert [r.family for r in report.refusals] == ["prune()", "scale(factor=1.0) -> prune()"]
    first = report.refusals[0]
    assert first.candidates == ["first", "weaker"] and first.reason == REASON and first.way_out.endswith("ignore")
    for name in ("first", "weaker"):
        assert by[name].status == "skipped" and by[name].refused == "prune()" and REASON not in by[name].error
    assert by["ignored"].status == "ok" and by["ok-too-strong"].status == "ok"
    assert not by["ok-too-strong"].within_budget
    assert not any(c.refined_from for c in report.candidates)  # no edge-search try spent on "prune()"
    text = (tmp_path / "run" / "report.json").read_text()
    assert text.count(REASON) == 2  # once per refused family, never per candidate
    buffer = io.StringIO()
    render_table(report, Console(file=buffer, width=120))
    assert buffer.getvalue().count(REASON) == 2
    html = (tmp_path / "run" / "report.html").read_text()
    assert 'id="refusals"' in html and html.count(REASON) == 2


def test_multihead_attention_split_for_int8_is_replaced_and_quantized_not_factorized():
    """Dynamic int8 runs nn.MultiheadAttention as four full-width Linears: that is the same layer
    in other modules (replaced), whose new projections are int8; not a low-rank factorization."""
    from tests.fixtures.blocks import BLOCKS
    from torchslim.core.changes import snapshot, step_changes
    from torchslim.quantize import DynamicInt8Config, quantize

    torch.manual_seed(0)
    model = BLOCKS["mha-batch-first"]().eval()
    before = snapshot(model)
    quantized = quantize(model, DynamicInt8Config(), example_inputs=(torch.randn(2, 1, 8, 8),))
    kinds = {c.layer: c.kind for c in step_changes(before, StepOutput(model=quantized), snapshot(quantized))}
    attention = [name for name, m in model.named_modules() if isinstance(m, torch.nn.MultiheadAttention)]
    assert attention and "factorized" not in kinds.values(), kinds
    for name in attention:
        assert kinds[name] == "replaced"
        assert all(kinds[f"{name}.{p}"] == "quantized" for p in ("q_proj", "k_proj", "v_proj", "out_proj")), kinds
