"""The distillation losses and the ``loss_fn`` the training engine calls.

Classification: Hinton et al.'s (2015) soft-target KL plus hard-label cross-entropy.
Embeddings (no labels): the student reproduces the teacher's output vectors (``embedding_loss``).
Transformers whose hidden width was kept can also match every layer's per-token states
(``hidden_state_kd``, see ``_hidden.py``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from torchslim.data import as_args
from torchslim.errors import ConfigError
from torchslim.train._hidden import HiddenStateKD


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor | None,
    *,
    temperature: float = 4.0,
    alpha: float = 0.7,
) -> torch.Tensor:
    """``alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(student, targets)``.

    ``alpha`` weighs the soft targets, as in Hinton et al. and seeds 001/004.

    The KL is averaged over the batch (``batchmean``, the true KL per sample). Its gradients
    shrink as 1/T^2 when T grows, so the T^2 factor keeps the soft and hard terms on the same
    scale whatever T is. ``targets=None`` (no labels) or ``alpha=1`` gives the pure soft loss.
    """
    if student_logits.shape != teacher_logits.shape:
        raise ConfigError(
            f"distill: the teacher's output shape {tuple(teacher_logits.shape)} differs from the student's "
            f"{tuple(student_logits.shape)}; both must predict the same classes."
        )
    t = temperature
    soft = F.kl_div(
        F.log_softmax(student_logits / t, dim=-1),
        F.log_softmax(teacher_logits / t, dim=-1),
        reduction="batchmean",
        log_target=True,
    ) * (t * t)
    if targets is None or alpha == 1:
        return soft
    hard = F.cross_entropy(student_logits, targets)
    return alpha * soft + (1.0 - alpha) * hard


def embedding_loss(student_out: torch.Tensor, teacher_out: torch.Tensor) -> torch.Tensor:
    """``mean(1 - cos(student, teacher))`` over the batch: 0 when every output points where
    the teacher's does.

    It is the task metric itself (fidelity, the mean cosine similarity) turned into a loss.
    No MSE term is added: sentence embeddings are L2-normalized, and for unit vectors
    ``||s - t||^2 = 2 (1 - cos)``, so MSE would be the same loss rescaled by ``2 / width``;
    for unnormalized outputs (a classifier's logits scored without labels) the metric ignores
    the length too, and an MSE term would spend capacity on a length nothing measures.
    """
    if student_out.shape != teacher_out.shape:
        raise ConfigError(
            f"distill: the teacher's output shape {tuple(teacher_out.shape)} differs from the student's "
            f"{tuple(student_out.shape)}; both must give embeddings of the same width."
        )
    cosine = F.cosine_similarity(student_out.float().flatten(1), teacher_out.float().flatten(1), dim=1)
    return (1.0 - cosine).mean()


def make_kd_loss(teacher: nn.Module, config=None, task: str = "classification", *, temperature: float = 4.0,
                 alpha: float = 0.7) -> Callable[[torch.Tensor, torch.Tensor, object], torch.Tensor]:
    """``loss_fn(outputs, targets, inputs)`` for ``torchslim.train.fit``: the teacher sees the
    same inputs, in eval mode and under no_grad (it costs one extra forward, no backward).

    ``task`` is the data's: "classification" gives ``kd_loss`` (temperature, alpha),
    "embedding" gives ``embedding_loss`` (the targets are placeholders and are ignored;
    temperature and alpha do not apply).
    """
    output_loss = kd_output_loss(config, task, temperature=temperature, alpha=alpha)
    teacher.eval()

    def loss_fn(outputs, targets, inputs) -> torch.Tensor:
        with torch.no_grad():
            teacher_out = teacher(*as_args(inputs))
        return output_loss(_first(outputs), _first(teacher_out), targets)

    return loss_fn


def kd_output_loss(config=None, task: str = "classification", *, temperature: float = 4.0,
                   alpha: float = 0.7) -> Callable[[torch.Tensor, torch.Tensor, object], torch.Tensor]:
    """``loss(student_out, teacher_out, targets)`` on the models' outputs for data of ``task``:
    ``kd_loss`` for classification, ``embedding_loss`` for embeddings. ``config`` (a
    DistillConfig, or anything with temperature and alpha) overrides the keyword values."""
    if config is not None:
        temperature, alpha = config.temperature, config.alpha
    if task == "embedding":
        return lambda student_out, teacher_out, _targets: embedding_loss(student_out, teacher_out)
    return lambda student_out, teacher_out, targets: kd_loss(student_out, teacher_out, targets,
                                                             temperature=temperature, alpha=alpha)


def hidden_state_kd(student: nn.Module, teacher: nn.Module, config=None, task: str = "embedding", *,
                    weight: float = 1.0, temperature: float = 4.0, alpha: float = 0.7) -> HiddenStateKD:
    """``make_kd_loss``'s output loss plus ``weight`` x the per-token hidden-state loss of every
    transformer layer (``torchslim.train._hidden``). A context manager (it hooks the layers):

        with hidden_state_kd(student, teacher, task="embedding") as loss_fn:
            fit(student, data, config, loss_fn=loss_fn, teacher=teacher)
    """
    teacher.eval()
    return HiddenStateKD(student, teacher, kd_output_loss(config, task, temperature=temperature, alpha=alpha), weight)


def _first(output):
    return output[0] if isinstance(output, (tuple, list)) else output
