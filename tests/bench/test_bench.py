from __future__ import annotations

import time

import pytest
import torch
import torch.nn as nn

from torchslim.artifacts import load, save_exported
from torchslim.bench import accuracy, count_macs, count_params, measure, peak_memory, time_callable


class FakeClock:
    """Stands in for the time module in bench/_timing: the clock moves only when the timed
    function "runs", by the next of a known list of costs (in ms), so the statistics are exact."""

    def __init__(self, costs_ms):
        self.now, self.costs = 0.0, iter(costs_ms)

    def perf_counter(self) -> float:
        return self.now

    def run(self) -> None:
        self.now += next(self.costs) / 1e3


def test_timer_statistics_with_a_fake_clock(monkeypatch):
    from torchslim.bench import _timing

    clock = FakeClock([500, 500] + [10, 20, 30] * 10)  # two slow warm-up calls (a "compile"), then 10/20/30 ms
    monkeypatch.setattr(_timing, "time", clock)
    stats = time_callable(clock.run, warmup_s=0.0, min_warmup=2, target_s=0.2, min_runs=5)
    # timed calls run until 200 ms have passed: 10+20+30+... reaches 210 ms after 11 calls
    assert stats.runs == 11
    assert stats.p50 == pytest.approx(20.0) and stats.p95 == pytest.approx(30.0)  # the warm-up is not counted
    samples = [10.0, 20.0, 30.0] * 3 + [10.0, 20.0]
    mean = sum(samples) / len(samples)
    assert stats.cv == pytest.approx((sum((x - mean) ** 2 for x in samples) / len(samples)) ** 0.5 / mean)

    clock = FakeClock([1] * 3 + [50] * 10)  # warm-up runs until warmup_s has passed, not just min_warmup calls
    monkeypatch.setattr(_timing, "time", clock)
    stats = time_callable(clock.run, warmup_s=0.003, min_warmup=1, target_s=10.0, min_runs=2, max_runs=4)
    assert stats.runs == 4 and stats.p50 == pytest.approx(50.0)  # max_runs caps a long target_s

    clock = FakeClock([60_000] + [40_000] * 30)  # 40 s a call: 2 warm-up and 3 timed calls, not 5 + 20
    monkeypatch.setattr(_timing, "time", clock)
    stats = time_callable(clock.run, budget_s=30.0)
    assert stats.runs == 3 and stats.p50 == pytest.approx(40_000.0)
    assert clock.now == pytest.approx(60 + 40 * 4)  # seconds spent in all


def test_params_and_macs_of_a_known_model():
    model = nn.Sequential(nn.Linear(64, 10), nn.ReLU(), nn.Linear(10, 3))
    assert count_params(model) == 64 * 10 + 10 + 10 * 3 + 3
    assert count_macs(model, (torch.randn(1, 64),)) == 64 * 10 + 10 * 3
    conv = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4))
    assert count_params(conv) == 36 + 8  # BN running statistics are not parameters
    assert count_macs(conv, (torch.randn(1, 1, 8, 8),)) == 4 * 8 * 8 * 9


def test_accuracy_of_known_predictions():
    data = torch.utils.data.TensorDataset(torch.eye(4), torch.tensor([0, 1, 2, 0]))
    assert accuracy(nn.Identity(), data) == pytest.approx(0.75)


def test_measure_reports_real_bytes_and_every_field(tmp_path, digits):
    from torchslim.zoo import create_model

    model = create_model("digits-mlp").eval()
    path = save_exported(model, tmp_path / "m.pt2", digits.example_inputs(2))
    fn = load(path)
    m = measure(fn, digits, artifact=path, runtime="eager", batch_sizes=(1, 8), target_s=0.1)
    assert m.size_bytes == path.stat().st_size
    assert m.params == count_params(model)
    assert m.macs == 64 * 256 + 256 * 128 + 128 * 10
    assert set(m.latency_ms) == {"1", "8"}
    assert m.throughput_per_s == pytest.approx(8 / (m.latency_ms["8"].p50 / 1e3))
    assert 0.0 <= m.accuracy <= 1.0 and m.peak_memory_bytes > 0
    assert m.cold_start_ms > 0 and m.workload is None  # digits is not text


def test_peak_memory_grows_with_the_model(tmp_path):
    small = save_exported(nn.Linear(64, 8), tmp_path / "small.pt2", (torch.randn(2, 64),))
    big = save_exported(nn.Linear(64, 400_000), tmp_path / "big.pt2", (torch.randn(2, 64),))
    # 400k x 64 fp32 weights are ~98 MiB; the probe must see at least most of them
    assert peak_memory(big, 1) - peak_memory(small, 1) > 80 * 2**20


def test_exported_artifact_round_trip(tmp_path, digits):
    from torchslim.zoo import create_model

    model = create_model("resnet-mini").eval()
    path = save_exported(model, tmp_path / "r.pt2", digits.example_inputs(2))
    fn = load(path)
    for batch in (1, 5):
        x = digits.example_inputs(batch)[0]
        torch.testing.assert_close(fn(x), model(x), rtol=1e-4, atol=1e-5)
    # no stack traces: they would ship the paths of the user's source files inside the artifact
    assert b"zoo/resnet.py" not in path.read_bytes()


def test_cpu_contention_sees_another_process_busy():
    """A neighbour spinning on a core during the block is reported as foreign load and yields a
    report note; our own waiting does not hide it."""
    import subprocess
    import sys

    from torchslim.bench import CpuContention

    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # let it start spinning
        with CpuContention() as busy:
            time.sleep(0.6)
    finally:
        spinner.kill()
        spinner.wait()
    if busy.foreign_cores is None:
        pytest.skip("no /proc/stat on this platform")
    assert busy.foreign_cores >= 0.5
    assert busy.busy and "other processes" in busy.note()


class _ShapeLog(nn.Module):
    """Sums the ids (a stand-in encoder) and records every input shape it was called with."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[int, int]] = []

    def forward(self, input_ids, attention_mask):
        self.shapes.append(tuple(input_ids.shape))
        return (input_ids * attention_mask).sum(dim=1, keepdim=True).float()


def test_sentence_workload_cuts_batches_to_their_longest_sentence():
    from torchslim.bench._workload import sentence_workload
    from torchslim.data._text import TokenizedText

    lengths = [3, 5, 2, 9, 4]
    ids = torch.zeros(5, 128, dtype=torch.int64)
    mask = torch.zeros(5, 128, dtype=torch.int64)
    for i, n in enumerate(lengths):
        ids[i, :n], mask[i, :n] = 7, 1
    data = TokenizedText(ids, mask, torch.zeros(5, dtype=torch.int64), ["s"] * 5)
    model = _ShapeLog()
    work = sentence_workload(model, data, device=torch.device("cpu"), batch_size=2, repeats=1)
    assert work.sentences == 5 and work.mean_tokens == pytest.approx(4.6)
    assert work.batched_s > 0 and work.one_by_one_s > 0
    # batches of 2 cut to their longest sentence, then each sentence alone at its own length
    assert set(model.shapes) == {(2, 5), (2, 9), (1, 4), (1, 3), (1, 5), (1, 2), (1, 9)}
    assert sentence_workload(model, torch.utils.data.TensorDataset(torch.zeros(3, 2)), device=torch.device("cpu")) is None


def test_macs_of_pytorch_transformer_layers_in_eval_mode():
    """Eval mode without grad takes nn.TransformerEncoderLayer's fused fast path, which the FLOP
    counter cannot see (it counted 0); the count is the layers' real work, and the fast path is
    back on afterwards."""
    d, ff, tokens = 64, 128, 16
    encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(d, 4, ff, batch_first=True), 2).eval()
    # per layer: q, k, v and out projections and the feed-forward pair (torch 2.13's counter has
    # no formula for the CPU attention kernel itself: tokens^2 x d more, left uncounted)
    per_layer = 4 * tokens * d * d + 2 * tokens * d * ff
    assert 2 * per_layer <= count_macs(encoder, (torch.randn(1, tokens, d),)) <= 2 * (per_layer + 2 * tokens**2 * d)
    assert torch.backends.mha.get_fastpath_enabled()
