"""``distill(student, teacher, data, config)``; its student may come from ``torchslim.prune.widen_student``."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
import torch.nn as nn

from torchslim.data import DataBundle, as_args
from torchslim.distill._config import DistillConfig, parse_distill_config
from torchslim.errors import ConfigError
from torchslim.train import hidden_state_kd, make_kd_loss


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

    ``hidden_states=True`` adds the per-token hidden-state loss of every transformer layer
    (``torchslim.train.hidden_state_kd``), for hf: models whose hidden width was kept; a
    student whose layers do not match the teacher's is refused before training (ConfigError).

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
        with _loss_fn(student, teacher, config, data) as loss_fn:
            fit(student, data, TrainConfig(**config.training_options(data.task)), device=device, loss_fn=loss_fn,
                log=log, teacher=teacher if data.task == "embedding" else None)
    finally:
        for p, flag in grad_flags:
            p.requires_grad_(flag)
    return student.eval()


def _loss_fn(student: nn.Module, teacher: nn.Module, config: DistillConfig, data: DataBundle):
    """The KD loss as a context manager: hidden-state KD hooks the layers for the run only."""
    if not config.hidden_states:
        return contextlib.nullcontext(make_kd_loss(teacher, config, task=data.task))
    loss_fn = hidden_state_kd(student, teacher, config, task=data.task, weight=config.hidden_weight)
    loss_fn.check(data.example_inputs(2, split="train"))
    return loss_fn


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
