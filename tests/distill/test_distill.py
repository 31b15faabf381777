"""Knowledge distillation: the loss is the formula, training works, bad pairs are refused."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from torchslim.cli import run
from torchslim.core.step import StepContext
from torchslim.data import DataBundle, load_data
from torchslim.distill import (
    DistillConfig,
    distill,
    embedding_loss,
    kd_loss,
    make_kd_loss,
    run_step,
    validate_step,
)
from torchslim.errors import ConfigError, TrainingError
from torchslim.prune import widen_student
from torchslim.train import TrainConfig, fit
from torchslim.zoo import create_model


@pytest.fixture(scope="module")
def digits():
    return load_data("digits")


@pytest.fixture(scope="module")
def teacher(digits):
    torch.manual_seed(0)
    model = create_model("digits-mlp")
    fit(model, digits, TrainConfig(epochs=4, seed=0))
    return model.eval()


def test_kd_loss_matches_hand_computed_value():
    # Two classes; teacher logits (ln 3, 0), student (0, 0), label 0, T = 2, alpha = 0.25.
    student = torch.tensor([[0.0, 0.0]])
    teacher = torch.tensor([[math.log(3.0), 0.0]])
    t, alpha = 2.0, 0.25
    p_t = [math.sqrt(3) / (math.sqrt(3) + 1), 1 / (math.sqrt(3) + 1)]  # softmax(teacher / T)
    p_s = [0.5, 0.5]
    kl = sum(p * math.log(p / q) for p, q in zip(p_t, p_s, strict=True))  # 0.03637
    ce = -math.log(0.5)
    expected = alpha * t * t * kl + (1 - alpha) * ce  # 0.55619
    got = kd_loss(student, teacher, torch.tensor([0]), temperature=t, alpha=alpha)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(0.5562, abs=1e-4)
    soft_only = kd_loss(student, teacher, None, temperature=t)
    assert soft_only.item() == pytest.approx(t * t * kl, rel=1e-6)


def test_kd_loss_is_zero_when_student_equals_teacher_without_labels():
    logits = torch.randn(5, 10)
    assert kd_loss(logits, logits.clone(), None, temperature=3.0).item() == pytest.approx(0.0, abs=1e-6)


def test_shape_mismatch_is_a_config_error(digits, teacher):
    with pytest.raises(ConfigError, match="output shape"):
        kd_loss(torch.randn(2, 10), torch.randn(2, 5), None)
    wrong = create_model("digits-mlp", num_classes=5)
    with pytest.raises(ConfigError, match=r"teacher's output shape \(2, 10\) differs from the student's \(2, 5\)"):
        distill(wrong, teacher, digits, DistillConfig(epochs=1))


@pytest.mark.slow
def test_distill_trains_student_and_leaves_teacher_alone(digits, teacher):
    from torchslim.bench import accuracy

    before = copy.deepcopy(teacher.state_dict())
    student = widen_student(teacher, 0.25)
    untrained = accuracy(student, digits.val)
    distill(student, teacher, digits, DistillConfig(epochs=8, lr=3e-3))
    assert accuracy(student, digits.val) > max(0.8, untrained + 0.3)
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in before.items())


@pytest.mark.parametrize("name", ["digits-cnn", "resnet-mini", "tiny-transformer"])
def test_widen_student_scales_widths_with_fresh_weights(name):
    teacher = create_model(name).eval()
    student = widen_student(teacher, 0.5)
    t_params = sum(p.numel() for p in teacher.parameters())
    s_params = sum(p.numel() for p in student.parameters())
    assert 0.15 * t_params < s_params < 0.4 * t_params  # widths halved: about a quarter of the weights
    assert student(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    assert sum(p.numel() for p in teacher.parameters()) == t_params  # teacher untouched


def test_widen_student_from_factory_and_zoo_name():
    assert isinstance(widen_student(lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)),
                                    0.5, example_inputs=(torch.randn(2, 1, 8, 8),))[1], nn.Linear)
    assert widen_student("digits-mlp", 0.5).net[1].out_features == 128
    with pytest.raises(ConfigError, match="width_multiplier"):
        widen_student("digits-mlp", 1.5)


def test_validate_step_rejects_bad_fields():
    assert validate_step({"epochs": 2, "temperature": 2.0}).alpha == 0.7
    with pytest.raises(ConfigError, match="temperature"):
        validate_step({"temperature": 0})
    with pytest.raises(ConfigError, match="teacher"):
        validate_step({"teacher": "resnet-mini"})


def test_run_step_distills_a_copy(digits, teacher):
    student = widen_student(teacher, 0.5)
    snapshot = copy.deepcopy(student.state_dict())
    ctx = StepContext(data=digits, device=torch.device("cpu"), teacher=teacher, work_dir=None,
                      example_inputs=digits.example_inputs(2), log=lambda _m: None)
    out = run_step(student, validate_step({"epochs": 1}), ctx)
    assert out.model is not student and "distill(" in out.notes[0]
    assert all(torch.equal(v, student.state_dict()[k]) for k, v in snapshot.items())


def test_cli_distill_bad_input_exits_2(tmp_path):
    assert run(["distill", "--teacher", "digits-mlp", "--width-multiplier", "0", "--out", str(tmp_path)]) == 2
    assert run(["distill", "--teacher", "digits-mlp", "--out", str(tmp_path)]) == 2  # no student given
    assert run(["distill", "--teacher", "digits-mlp", "--model", "digits-cnn", "--alpha", "2", "--out", str(tmp_path)]) == 2


# ----- embedding data (no labels): the student reproduces the teacher's vectors ---------------


class Embedder(nn.Module):
    """A toy sentence-embedding model: features -> L2-normalized 16-d vector."""

    def __init__(self, hidden: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, hidden), nn.ReLU(), nn.Linear(hidden, 16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(x), dim=1)


@pytest.fixture(scope="module")
def vectors():
    """Embedding data as text:FILE gives it: inputs and placeholder targets (all 0), no classes."""
    g = torch.Generator().manual_seed(0)
    split = [TensorDataset(torch.randn(n, 8, generator=g), torch.zeros(n, dtype=torch.int64)) for n in (256, 64, 64)]
    return DataBundle("toy-vectors", *split, task="embedding")


def _fidelity(student, teacher, dataset) -> float:
    x = dataset.tensors[0]
    with torch.no_grad():
        return float(F.cosine_similarity(student(x), teacher(x)).mean())


def test_embedding_loss_is_one_minus_cosine():
    teacher = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    student = torch.tensor([[1.0, 1.0], [0.0, 5.0]])  # 45 degrees off; same direction (length ignored)
    assert embedding_loss(student, teacher).item() == pytest.approx((1 - math.sqrt(0.5) + 0) / 2, rel=1e-6)
    assert embedding_loss(teacher, teacher).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ConfigError, match="same width"):
        embedding_loss(torch.randn(2, 4), torch.randn(2, 3))
    # targets of embedding data are placeholders: the loss_fn ignores them
    model = Embedder()
    loss_fn = make_kd_loss(model, DistillConfig(), task="embedding")
    x = torch.randn(4, 8)
    assert loss_fn(model(x), None, (x,)).item() == pytest.approx(0.0, abs=1e-6)


def test_fit_refuses_embedding_data_without_loss_fn_or_teacher(vectors):
    with pytest.raises(TrainingError, match="without labels.*torchslim.distill"):
        fit(Embedder(), vectors, TrainConfig(epochs=1))
    with pytest.raises(TrainingError, match="teacher="):
        fit(Embedder(), vectors, TrainConfig(epochs=1), loss_fn=lambda out, _y, _x: out.sum())


def test_distill_embeddings_picks_best_epoch_by_fidelity(vectors):
    torch.manual_seed(0)
    teacher = Embedder(64).eval()
    student = Embedder(32)
    before = _fidelity(student, teacher, vectors.test)
    config = DistillConfig(epochs=6, lr=1e-2)
    assert config.training_options("embedding")["batch_size"] == 16
    assert config.training_options("classification") == {"epochs": 6, "lr": 1e-2, "batch_size": 64, "seed": 0}
    assert DistillConfig().training_options("classification")["lr"] == 1e-3  # classification defaults unchanged
    history = []
    distill(student, teacher, vectors, config, log=history.append)
    after = _fidelity(student, teacher, vectors.test)
    assert before < 0.5 and after > 0.9, (before, after)
    fidelities = [float(line.split("val_fidelity ")[1].split()[0]) for line in history]
    assert len(fidelities) == 6 and "val_accuracy" not in " ".join(history)
    # the kept weights are the best epoch's on validation (fidelity to the teacher)
    assert _fidelity(student, teacher, vectors.val) == pytest.approx(max(fidelities), abs=1e-3)
    assert all(p.requires_grad for p in teacher.parameters())  # the teacher is left as it was


def test_distill_step_on_embedding_data(vectors):
    torch.manual_seed(0)
    teacher = Embedder(64).eval()
    ctx = StepContext(data=vectors, device=torch.device("cpu"), teacher=teacher, work_dir=None,
                      example_inputs=vectors.example_inputs(2), log=lambda _m: None)
    student = Embedder(32)
    out = run_step(student, validate_step({"epochs": 2, "lr": 1e-2}), ctx)
    assert _fidelity(out.model, teacher, vectors.test) > _fidelity(student, teacher, vectors.test) + 0.2
