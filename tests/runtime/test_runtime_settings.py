"""Runtime settings are part of a candidate: in the manifest, used by load and bench, tuned by
measurement (never to a slower setting than the default), fixed by a recipe, in the report.

No timing is asserted here: the tuner is driven with fake timings, and the two-session
spinning comparison lives in benchmarks/runtime_tuning.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import onnxruntime as ort
import pytest
import torch
import torch.nn as nn

import torchslim
from torchslim.artifacts import load, read_manifest, save_for_runtime
from torchslim.bench._tune import TimedTry, time_interleaved, time_tries
from torchslim.data import load_data
from torchslim.errors import ConfigError
from torchslim.pipeline import MeasureOptions, RunOptions, optimize
from torchslim.pipeline._recipe import TuningSpec, load_recipe
from torchslim.pipeline._tune import load_with_settings, pick, tuning_space
from torchslim.runtime import _settings
from torchslim.runtime._settings import (
    OpenVINOSettings,
    OrtSettings,
    TorchSettings,
    TorchThreads,
    settings_from_manifest,
    write_settings,
)

SPIN = "session.intra_op.allow_spinning"
_threads = torch.get_num_threads()


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10)).eval()


EXAMPLE = (torch.randn(2, 1, 8, 8),)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> dict[str, Path]:
    """One small artifact per runtime family (written once for the module)."""
    root = tmp_path_factory.mktemp("settings")
    out = {}
    for runtime in ("onnxruntime", "openvino", "eager"):
        folder = root / runtime
        folder.mkdir()
        out[runtime] = save_for_runtime(_mlp(), folder, EXAMPLE, runtime)
    return out


@pytest.mark.parametrize("runtime, settings", [
    ("onnxruntime", OrtSettings(intra_op_threads=1, graph_optimization_level="extended")),
    ("openvino", OpenVINOSettings(performance_hint="THROUGHPUT", num_streams=1, threads=1)),
    ("eager", TorchSettings(runtime="eager", threads=1)),
])
def test_manifest_round_trip_and_digests_still_verify(artifacts, runtime, settings):
    path = artifacts[runtime]
    assert settings_from_manifest(read_manifest(path), runtime) == _settings.default_settings(runtime)
    write_settings(path, settings, effective_precision="f32")
    manifest = read_manifest(path)  # verifies the artifact's digests: writing settings changed no file
    assert settings_from_manifest(manifest, runtime) == settings
    assert manifest.extra["effective_precision"] == "f32"
    assert settings_from_manifest(manifest, "tensorrt") is None  # settings for another runtime are not used
    write_settings(path, _settings.default_settings(runtime))


def test_load_uses_the_manifest_settings(artifacts):
    onnx = artifacts["onnxruntime"]
    write_settings(onnx, OrtSettings(intra_op_threads=1, execution_mode="parallel", inter_op_threads=2))
    options = load(onnx).session.get_session_options()
    assert options.intra_op_num_threads == 1 and options.inter_op_num_threads == 2
    assert options.execution_mode == ort.ExecutionMode.ORT_PARALLEL
    assert options.get_session_config_entry(SPIN) == "0"
    # an explicit ``settings`` replaces the manifest's; unknown keys are a clear error
    assert load(onnx, settings={"intra_op_threads": 2}).session.get_session_options().intra_op_num_threads == 2
    with pytest.raises(ConfigError, match="intra_op_thread"):
        load(onnx, settings={"intra_op_thread": 2})
    write_settings(onnx, OrtSettings())

    eager = artifacts["eager"]
    write_settings(eager, TorchSettings(runtime="eager", threads=1))
    fn = load(eager)
    assert isinstance(fn, TorchThreads) and fn.threads == 1
    before = torch.get_num_threads()
    assert fn(torch.randn(3, 1, 8, 8)).shape == (3, 10)
    assert torch.get_num_threads() == before  # the process's threads are put back after the call
    write_settings(eager, TorchSettings(runtime="eager"))
    assert not isinstance(load(eager), TorchThreads)


def test_openvino_fp32_candidate_runs_at_f32(artifacts):
    """Left to itself, OpenVINO's CPU plugin runs bf16 on CPUs with AMX / AVX512-BF16 (this
    project's CI Xeon does); an fp32 artifact must read back f32 from the compiled model."""
    fn, record, _ = load_with_settings(artifacts["openvino"], "openvino", fixed=None, spec=None, objective="latency",
                                       batch_sizes=(1,), make_inputs=lambda b: EXAMPLE, device=torch.device("cpu"))
    if getattr(fn, "execution_precision", None) is None:
        pytest.skip("this OpenVINO does not report INFERENCE_PRECISION_HINT")
    precision = fn.compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
    assert precision == "f32" == record.effective_precision
    assert read_manifest(artifacts["openvino"]).extra["effective_precision"] == "f32"


def test_bench_sessions_do_not_spin(artifacts, monkeypatch):
    """Every ONNX Runtime session torchslim's measurement creates has spinning off, so a session
    timed after another is not slowed by its leftover spinning threads."""
    created = []
    real = ort.InferenceSession

    def recording(*args, **kwargs):
        session = real(*args, **kwargs)
        created.append(session)
        return session

    monkeypatch.setattr("torchslim.runtime.onnxrt.ort.InferenceSession", recording)
    metrics = torchslim.benchmark(str(artifacts["onnxruntime"]), "digits", batch_sizes=(1,))
    assert metrics.runtime == "onnxruntime"
    assert created, "the benchmark created no ONNX Runtime session in this process"
    for session in created:
        assert session.get_session_options().get_session_config_entry(SPIN) == "0"


def _fake_timer(p50s: list[float]):
    """A timer returning ``p50s[i]`` ms for the i-th loaded variant (no clock involved)."""
    def timer(calls, budget_s, target_s):
        assert 0 < target_s <= budget_s
        assert len(calls) == len(p50s)
        for call in calls:
            call()
        return [[ms, ms, ms] for ms in p50s]
    return timer


@pytest.mark.parametrize("p50s, chosen", [
    ([10.0, 12.0, 11.0, 15.0], 0),  # every try slower: the default stays
    ([10.0, 9.9, 10.2, 10.1], 0),  # 1% faster is noise (min_gain 3%): the default stays
    ([10.0, 12.0, 7.0, 9.0], 2),  # clearly faster: taken
    ([10.0, 8.0, 6.0, 6.0], 2),  # a tie goes to the earlier try
])
def test_tuning_never_picks_a_slower_setting(artifacts, p50s, chosen):
    onnx = artifacts["onnxruntime"]
    space = tuning_space("onnxruntime", "latency", 4)
    assert space[0] == OrtSettings() and len(space) == 4  # the default is always the first try
    timed = time_tries([lambda: (lambda: None)] * 4, 5.0, _fake_timer(p50s))
    assert pick(timed, 0.03) == chosen
    assert timed[pick(timed, 0.03)].p50_ms <= p50s[0]

    torch.set_num_threads(4)  # the space depends on the thread budget: 4 threads, 4 tries
    try:
        fn, record, notes = load_with_settings(
            onnx, "onnxruntime", fixed=None, spec=TuningSpec(max_tries=4, max_seconds=5), objective="latency",
            batch_sizes=(1, 8), make_inputs=lambda b: (torch.randn(b, 1, 8, 8),), device=torch.device("cpu"),
            timer=_fake_timer(p50s))
    finally:
        torch.set_num_threads(_threads)
    tries = record.tuning.tries
    assert record.source == "tuned" and record.tuning.batch_size == 1 and len(tries) == 4
    assert [t.p50_ms for t in tries] == p50s and [t.chosen for t in tries] == [i == chosen for i in range(4)]
    assert record.settings == space[chosen].model_dump() == tries[chosen].settings
    assert settings_from_manifest(read_manifest(onnx), "onnxruntime") == space[chosen]  # load will use it
    assert fn.session.get_session_options().intra_op_num_threads == (space[chosen].intra_op_threads or 4)
    assert any("tuned" in n.text for n in notes)
    write_settings(onnx, OrtSettings())


def test_tries_that_fail_are_recorded_and_the_budget_bounds_loading():
    def broken():
        raise RuntimeError("cannot compile\nC++ trace")

    timed = time_tries([lambda: (lambda: None), broken, lambda: (lambda: None)], 5.0, _fake_timer([3.0, 1.0]))
    assert timed[1].error == "RuntimeError: cannot compile" and timed[1].p50_ms is None
    assert pick(timed, 0.03) == 2
    assert pick([TimedTry(p50_ms=None, error="x"), TimedTry(p50_ms=1.0)], 0.03) == 0  # no default figure: default


def _recipe(**cand) -> dict:
    return {"candidates": [{"name": "onnx", "steps": [{"export": {"format": "onnx"}}], **cand}]}


@pytest.mark.parametrize("cand, message", [
    ({"runtime": "onnxruntime", "runtime_settings": {"intra_op_thread": 1}},
     r"candidates\[0\].*runtime_settings\.intra_op_thread: Extra inputs are not permitted"),
    ({"runtime": "onnxruntime", "runtime_settings": {"execution_mode": "fast"}},
     r"runtime_settings\.execution_mode: Input should be 'sequential' or 'parallel'"),
    ({"runtime": "openvino", "runtime_settings": {"intra_op_threads": 1}}, r"runtime_settings\.intra_op_threads"),
    ({"runtime_settings": {"intra_op_threads": 1}}, r"needs the candidate's `runtime:`"),
    ({"runtime": "tensorrt", "runtime_settings": {"threads": 1}}, r"'tensorrt' has no settings"),
])
def test_recipe_settings_are_validated_with_their_path(cand, message):
    with pytest.raises(ConfigError, match=message):
        load_recipe(_recipe(**cand))


def test_recipe_fixes_settings_and_tuning_keys_are_checked():
    loaded = load_recipe(_recipe(runtime="onnxruntime", runtime_settings={"intra_op_threads": 1}))
    assert loaded.candidates[0].runtime_settings["intra_op_threads"] == 1
    assert load_recipe({**_recipe(), "tuning": {"max_tries": 2}}).spec.tuning.max_tries == 2
    with pytest.raises(ConfigError, match=r"tuning\.max_trys"):
        load_recipe({**_recipe(), "tuning": {"max_trys": 2}})


def test_report_carries_settings_and_tries(tmp_path):
    from tests.pipeline.test_pipeline import fake_measure

    data = load_data("digits")
    recipe = {"tuning": {"max_tries": 2, "max_seconds": 2}, "candidates": [
        {"name": "onnx-tuned", "steps": [{"export": {"format": "onnx"}}], "runtime": "onnxruntime"},
        {"name": "onnx-fixed", "steps": [{"export": {"format": "onnx"}}], "runtime": "onnxruntime",
         "runtime_settings": {"intra_op_threads": 1}},
    ]}
    report = optimize(_mlp(), data, recipe, run=RunOptions(out=tmp_path / "run", device="cpu"),
                      measure=MeasureOptions(batch_sizes=(1,), measure_fn=fake_measure({})))
    assert report.environment["thread_budget"]["onnxruntime_allow_spinning"] is False
    tuned, fixed = report.candidates
    assert tuned.status == fixed.status == "ok"
    assert tuned.runtime_settings.source == "tuned" and tuned.runtime_settings.tuning.tries[0].settings == OrtSettings().model_dump()
    assert sum(t.chosen for t in tuned.runtime_settings.tuning.tries) == 1
    assert fixed.runtime_settings.source == "recipe" and fixed.runtime_settings.tuning is None
    assert fixed.runtime_settings.settings["intra_op_threads"] == 1
    manifest = read_manifest(tmp_path / "run" / fixed.artifact)
    assert manifest.extra["runtime_settings"]["intra_op_threads"] == 1
    saved = json.loads((tmp_path / "run" / "report.json").read_text())  # written, and schema-checked, by optimize
    assert saved["candidates"][0]["runtime_settings"]["tuning"]["tries"][0]["chosen"] in (True, False)
    html = (tmp_path / "run" / "report.html").read_text()
    assert 'class="tuning"' in html and "fixed by the recipe" in html


def test_interleaved_timer_calls_every_variant_each_round():
    counts = [0, 0]

    def bump(i):
        def call():
            counts[i] += 1
        return call

    samples = time_interleaved([bump(0), bump(1)], budget_s=30, target_s=0.01)
    assert len(samples[0]) >= 3 and len(samples[1]) >= 3  # three rounds at least, within the budget
    assert counts == [len(samples[0]), len(samples[1])]
    assert load_recipe("default").spec.tuning is not None  # the default recipe tunes


def test_thread_counts_tuned_on_another_machine_are_named(artifacts, monkeypatch):
    onnx = artifacts["onnxruntime"]
    write_settings(onnx, OrtSettings(intra_op_threads=1), tuned=True)
    manifest = read_manifest(onnx)
    assert _settings.tuned_elsewhere(manifest, OrtSettings(intra_op_threads=1)) is None  # the same machine
    monkeypatch.setattr(_settings.os, "cpu_count", lambda: 64)
    notice = _settings.tuned_elsewhere(manifest, settings_from_manifest(manifest, "onnxruntime"))
    assert "intra_op_threads=1" in notice and "64" in notice
    assert _settings.tuned_elsewhere(manifest, OrtSettings()) is None  # no fixed thread count: nothing to say
    write_settings(onnx, OrtSettings())
    assert _settings.TUNED_ON_KEY not in read_manifest(onnx).extra
