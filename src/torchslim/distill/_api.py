"""``distill(student, teacher, data, config)`` and ``widen_student(teacher, width_multiplier)``."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn as nn

from torchslim.data import DataBundle, as_args
from torchslim.distill._config import DistillConfig, parse_distill_config
from torchslim.distill._loss import make_kd_loss
from torchslim.errors import ConfigError


def distill(
    student: nn.Module,
    teacher: nn.Module,
    data: DataBundle,
    config: DistillConfig | dict | None = None,
    *,
    device: str | torch.device = "cpu",
    log: Callable[[str], None] | None = None,
) -> nn.Module:
    """Train ``student`` (in place; also returned) to match ``teacher`` on ``data.train``.

    Classification data: soft targets plus labels (``kd_loss``), best epoch by validation
    accuracy. Embedding data (``text:FILE`` without labels): the student learns to reproduce
    the teacher's output vectors (``embedding_loss``, 1 - cosine similarity), best epoch by
    validation fidelity to the teacher; ``temperature`` and ``alpha`` do not apply.

    The teacher is never changed. Runs on ``torchslim.train.fit``: its schedule, its
    best-on-validation checkpointing. A teacher whose output shape differs from the
    student's is refused before any training (ConfigError).
    """
    from torchslim.train import TrainConfig, fit

    config = parse_distill_config(config)
    if data.task not in ("classification", "embedding"):
        raise ConfigError(f"distill: data {data.spec!r} is a {data.task} task; distillation handles classification and embedding data.")
    device = torch.device(device)
    student.to(device)
    teacher.to(device).eval()
    check_compatible(student, teacher, tuple(t.to(device) for t in data.example_inputs(2, split="train")))
    # Embedding data has no labels, so fit gets the teacher to pick the best epoch by fidelity;
    # it freezes the teacher's parameters, whose requires_grad flags are put back afterwards.
    grad_flags = [(p, p.requires_grad) for p in teacher.parameters()]
    try:
        fit(student, data, TrainConfig(**config.training_options(data.task)), device=device,
            loss_fn=make_kd_loss(teacher, config, task=data.task), log=log,
            teacher=teacher if data.task == "embedding" else None)
    finally:
        for p, flag in grad_flags:
            p.requires_grad_(flag)
    return student.eval()


@torch.no_grad()
def check_compatible(student: nn.Module, teacher: nn.Module, example_inputs: tuple) -> None:
    """ConfigError unless teacher and student give outputs of the same shape on the same inputs."""
    was_training = student.training
    student.eval()
    try:
        s_out, t_out = student(*as_args(example_inputs)), teacher(*as_args(example_inputs))
    finally:
        student.train(was_training)
    s_out = s_out[0] if isinstance(s_out, (tuple, list)) else s_out
    t_out = t_out[0] if isinstance(t_out, (tuple, list)) else t_out
    if s_out.shape != t_out.shape:
        raise ConfigError(
            f"distill: the teacher's output shape {tuple(t_out.shape)} differs from the student's {tuple(s_out.shape)}. "
            "Teacher and student must predict the same classes (or embeddings of the same width) from the same inputs."
        )


def widen_student(
    teacher: nn.Module | Callable[[], nn.Module] | str,
    width_multiplier: float,
    *,
    example_inputs: tuple[torch.Tensor, ...] | None = None,
    seed: int = 0,
) -> nn.Module:
    """A freshly initialized student: the teacher's architecture with every prunable width
    (channels, hidden units, attention heads) scaled by ``width_multiplier`` in (0, 1].

    ``teacher`` is a model (copied, never changed), a factory returning one, or a zoo name.
    The narrowing is done by Torch-Pruning's dependency graph (coupled layers stay
    consistent, the classifier's outputs are kept), then every weight is re-initialized:
    the student learns from scratch, from the teacher, by ``distill``.
    """
    from torchslim.prune._channel import shrink_to_width
    from torchslim.prune._layers import example_batch

    if not 0.0 < width_multiplier <= 1.0:
        raise ConfigError(
            f"width_multiplier must be in (0, 1] (a fraction of the teacher's widths), got {width_multiplier}. "
            "For a wider student, build it from its factory with larger widths."
        )
    if isinstance(teacher, str):
        from torchslim.zoo import create_model

        model = create_model(teacher)
    elif isinstance(teacher, nn.Module):
        model = copy.deepcopy(teacher)
    elif callable(teacher):
        model = teacher()
        if not isinstance(model, nn.Module):
            raise ConfigError(f"widen_student: the factory returned {type(model).__name__}, not an nn.Module.")
    else:
        raise ConfigError(f"widen_student: give a model, a factory or a zoo name, not {type(teacher).__name__}.")
    model = model.cpu().eval()
    shrink_to_width(model, width_multiplier, example_batch(model, None, example_inputs, "cpu"))
    torch.manual_seed(seed)
    _reinitialize(model)
    return model


@torch.no_grad()
def _reinitialize(model: nn.Module) -> None:
    for module in model.modules():
        if hasattr(module, "reset_parameters") and callable(module.reset_parameters):
            module.reset_parameters()
        else:
            # Parameters held directly (a position embedding): small random values.
            for p in module.parameters(recurse=False):
                nn.init.trunc_normal_(p, std=0.02)
