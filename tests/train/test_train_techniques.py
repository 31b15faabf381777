"""Each training technique does what it claims (checked through the real loop where it can be)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
from torch.utils.data import TensorDataset

from torchslim import zoo
from torchslim.data import DataBundle, load_data
from torchslim.errors import ConfigError, TrainingError, UnsupportedError
from torchslim.train import TrainConfig, fit
from torchslim.train._optim import build_optimizer, build_scheduler


@pytest.fixture(scope="module")
def small_digits() -> DataBundle:
    full = load_data("digits")
    x, y = full.train.tensors
    return DataBundle("digits-small", TensorDataset(x[:256], y[:256]), full.val, full.test, num_classes=10, input_shape=(1, 8, 8))


def _first_step_grads(model: nn.Module, data: DataBundle, config: TrainConfig) -> tuple[dict[str, torch.Tensor], float | None]:
    """Run the real loop for one optimizer step and return the gradients it stepped with."""
    captured: dict = {}

    def grab(state):
        captured["grads"] = {n: p.grad.detach().clone() for n, p in state.model.named_parameters() if p.grad is not None}
        captured["norm"] = state.grad_norm
        state.stop = True

    fit(model, data, config, hooks=[grab])
    return captured["grads"], captured["norm"]


def _mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return zoo.create_model("digits-mlp")  # no BN, no dropout: the batch's gradient is well defined


def test_accumulation_over_k_micro_batches_equals_one_big_batch(small_digits):
    # 4 micro-batches of 16 (loss / 4 each) vs one batch of 64: the same 64 samples (the order
    # depends only on the seed), so the mean-loss gradient must agree up to float32 summation
    # order: |diff| <= 1e-6 + 1e-4 * |g|.
    big, _ = _first_step_grads(_mlp(), small_digits, TrainConfig(epochs=1, batch_size=64))
    accumulated, _ = _first_step_grads(_mlp(), small_digits, TrainConfig(epochs=1, batch_size=16, grad_accum_steps=4))
    assert big.keys() == accumulated.keys() and big
    for name in big:
        torch.testing.assert_close(accumulated[name], big[name], rtol=1e-4, atol=1e-6, msg=name)
    # and it is not trivially true: one micro-batch alone gives a different gradient
    single, _ = _first_step_grads(_mlp(), small_digits, TrainConfig(epochs=1, batch_size=16))
    assert not torch.allclose(single["net.1.weight"], big["net.1.weight"], atol=1e-4)


def test_clip_grad_norm_bounds_the_norm_and_logs_the_pre_clip_norm(small_digits):
    grads, pre_clip = _first_step_grads(_mlp(), small_digits, TrainConfig(epochs=1, clip_grad_norm=0.05))
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads.values()]))
    assert pre_clip is not None and pre_clip > 0.05  # it really had to clip
    assert float(total) <= 0.05 * (1 + 1e-4)


def test_clip_grad_value_bounds_every_element(small_digits):
    grads, pre_clip = _first_step_grads(_mlp(), small_digits, TrainConfig(epochs=1, clip_grad_value=1e-3))
    assert max(float(g.abs().max()) for g in grads.values()) <= 1e-3 * (1 + 1e-6)  # float32(1e-3)
    assert pre_clip is not None and pre_clip > 1e-3


def _lr_trace(config: TrainConfig, total_steps: int, steps_per_epoch: int = 10) -> list[float]:
    model = nn.Linear(2, 2)
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config, total_steps, steps_per_epoch)
    trace = []
    for _ in range(total_steps):
        trace.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return trace


@pytest.mark.parametrize("pct_start", [0.3, 0.5])
def test_onecycle_peaks_where_configured(pct_start):
    total = 100
    trace = _lr_trace(TrainConfig(schedule="onecycle", lr=0.1, onecycle_pct_start=pct_start), total)
    peak = max(range(total), key=trace.__getitem__)
    assert trace[peak] == pytest.approx(0.1)
    assert abs(peak - pct_start * total) <= 1
    assert trace[0] < 0.01 and trace[-1] < 1e-4  # starts at max_lr/25, ends near zero


def test_cosine_warmup_step_and_constant_schedules():
    cosine = _lr_trace(TrainConfig(schedule="cosine", lr=0.1, warmup_fraction=0.1, min_lr_ratio=0.1), 100)
    assert cosine[0] == pytest.approx(0.01) and cosine[9] == pytest.approx(0.1)  # linear warm-up over 10 steps
    assert all(a >= b for a, b in zip(cosine[9:], cosine[10:], strict=False)) and cosine[-1] == pytest.approx(0.01, rel=0.05)
    step = _lr_trace(TrainConfig(schedule="step", lr=0.1, step_epochs=2, step_gamma=0.5), 50, steps_per_epoch=10)
    assert step[19] == pytest.approx(0.1) and step[20] == pytest.approx(0.05) and step[40] == pytest.approx(0.025)
    assert _lr_trace(TrainConfig(schedule="constant", lr=0.1), 20) == [pytest.approx(0.1)] * 20


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_optimizers_by_name(optimizer):
    built = build_optimizer(nn.Linear(2, 2), TrainConfig(optimizer=optimizer, momentum=0.8))
    expected = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[optimizer]
    assert type(built) is expected
    if optimizer == "sgd":
        assert built.param_groups[0]["momentum"] == 0.8


def test_activation_checkpointing_gives_the_same_gradients(small_digits):
    def cnn():
        torch.manual_seed(0)
        return zoo.create_model("digits-cnn")

    plain, _ = _first_step_grads(cnn(), small_digits, TrainConfig(epochs=1))
    model = cnn()
    calls = []
    model.features[1].register_forward_hook(lambda *_: calls.append(1))
    checkpointed, _ = _first_step_grads(model, small_digits, TrainConfig(epochs=1, checkpoint_blocks=["features.0", "features.1"]))
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], rtol=1e-5, atol=1e-6, msg=name)
    assert len(calls) >= 2  # the block really ran again during backward (1 train forward + 1 recompute)
    assert "forward" not in model.features[1].__dict__  # the wrapper is removed after training


def test_checkpoint_blocks_that_match_nothing_are_an_error(small_digits):
    with pytest.raises(ConfigError, match="no_such_block"):
        fit(_mlp(), small_digits, TrainConfig(epochs=1, checkpoint_blocks=["no_such_block"]))


@pytest.mark.slow  # bf16 matmuls take a slow reference path on CPUs without bf16 hardware
def test_bf16_autocast_trains_on_cpu(small_digits):
    seen = []
    result = fit(_mlp(), small_digits, TrainConfig(epochs=2, batch_size=16, precision="bf16"),
                 loss_fn=lambda out, y, _x: (seen.append(out.dtype), nn.functional.cross_entropy(out.float(), y))[1])
    assert seen[0] == torch.bfloat16  # the forward really ran in bf16
    fp32 = fit(_mlp(), small_digits, TrainConfig(epochs=2, batch_size=16))
    assert result.best_val_accuracy > 0.4  # it learned (chance is 0.1) ...
    assert abs(result.best_val_accuracy - fp32.best_val_accuracy) < 0.05  # ... as well as fp32 did


def test_fp16_on_cpu_is_refused(small_digits):
    with pytest.raises(UnsupportedError, match="bf16"):
        fit(_mlp(), small_digits, TrainConfig(epochs=1, precision="fp16"))


def test_early_stopping_and_best_weights(small_digits):
    model = _mlp()
    # lr 0 never improves after the first epoch: patience 2 stops after epoch 3 of 10
    result = fit(model, small_digits, TrainConfig(epochs=10, lr=1e-12, schedule="constant", early_stopping_patience=2))
    assert result.stopped_early and result.epochs_run == 3
    assert not model.training


def test_hooks_objects_and_teacher(small_digits):
    teacher = _mlp(1)

    class Recorder:
        def __init__(self):
            self.steps, self.epochs = 0, []

        def on_step_end(self, state):
            self.steps += 1
            assert state.teacher is teacher and not state.teacher.training

        def on_epoch_end(self, state):
            self.epochs.append(state.val_accuracy)

    recorder = Recorder()
    result = fit(_mlp(), small_digits, TrainConfig(epochs=2), teacher=teacher, hooks=[recorder])
    assert recorder.steps == result.steps == 8 and len(recorder.epochs) == 2
    assert not any(p.requires_grad for p in teacher.parameters())


def test_nan_loss_stops_with_training_error(small_digits):
    with pytest.raises(TrainingError, match="diverged"):
        fit(_mlp(), small_digits, TrainConfig(epochs=1), loss_fn=lambda out, y, _x: out.sum() * math.nan)


def test_embedding_data_cannot_be_trained(small_digits):
    data = DataBundle("text:x", small_digits.train, small_digits.val, small_digits.test, task="embedding")
    with pytest.raises(TrainingError, match="embedding"):
        fit(_mlp(), data, TrainConfig(epochs=1))


@pytest.mark.slow
def test_compiled_training_step_matches_eager(small_digits):
    eager, _ = _first_step_grads(_mlp(), small_digits, TrainConfig(epochs=1))
    compiled, _ = _first_step_grads(_mlp(), small_digits, TrainConfig(epochs=1, compile=True))
    for name in eager:
        torch.testing.assert_close(compiled[name], eager[name], rtol=1e-4, atol=1e-5, msg=name)
