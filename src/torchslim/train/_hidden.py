"""Per-token hidden-state distillation for transformers whose pruning kept the hidden width.

The output loss (1 - cosine of the sentence embeddings) gives the student one number per
sentence to learn from; a pruned encoder has to re-learn what every layer writes into the
residual stream from that alone. Matching every layer's output, token by token, gives it
``layers x tokens x width`` targets per sentence instead (TinyBERT's hidden-state loss,
Jiao et al. 2020, here without a projection: structured pruning keeps the hidden width, so
student layer i and teacher layer i have the same shape and are compared directly).

The per-layer term is a normalized squared error over the real tokens (the attention mask
says which; padding never counts): ``sum ||s - t||^2 / sum ||t||^2``. Normalizing by the
teacher's energy makes layers of different scale weigh the same, and it is 0 exactly when
every real token's state equals the teacher's. MSE rather than per-token cosine, because
mean pooling weighs tokens by their length: a cosine loss would leave the lengths free.
Cost: the layer outputs are captured with forward hooks during the forward passes fit and
the teacher already make; no extra forward.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

from torchslim.data import as_args
from torchslim.errors import ConfigError

OutputLoss = Callable[[torch.Tensor, torch.Tensor, object], torch.Tensor]


def hidden_state_loss(student_states: list[torch.Tensor], teacher_states: list[torch.Tensor],
                      attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over layers of ``sum_real_tokens ||s - t||^2 / sum_real_tokens ||t||^2``.

    States are ``(batch, tokens, width)``; ``attention_mask`` ``(batch, tokens)`` marks the
    real tokens (None: all are). 0 when the student's states equal the teacher's on every
    real token, whatever the padding positions hold.
    """
    if len(student_states) != len(teacher_states) or not student_states:
        raise ConfigError(f"distill.hidden_states: the student has {len(student_states)} transformer layers and the "
                          f"teacher {len(teacher_states)}; hidden states are matched layer by layer, so both need the "
                          "same number (at least one).")
    losses = []
    for index, (s, t) in enumerate(zip(student_states, teacher_states, strict=True)):
        if s.shape != t.shape:
            raise ConfigError(f"distill.hidden_states: layer {index} gives states of shape {tuple(s.shape)} in the "
                              f"student and {tuple(t.shape)} in the teacher. Hidden-state distillation needs the hidden "
                              "width kept (structured pruning of heads and FFN neurons keeps it); set hidden_states: false.")
        s, t = s.float(), t.float()
        mask = torch.ones(s.shape[:2], device=s.device) if attention_mask is None else attention_mask.to(s.device, torch.float32)
        error = ((s - t) ** 2).sum(-1) * mask
        energy = (t**2).sum(-1) * mask
        losses.append(error.sum() / energy.sum().clamp_min(1e-12))
    return torch.stack(losses).mean()


class _Capture:
    """Forward hooks keeping the output of each of ``layers`` from the latest forward."""

    def __init__(self, layers: list[nn.Module]) -> None:
        self.states: list[torch.Tensor | None] = [None] * len(layers)
        self.handles = [layer.register_forward_hook(self._hook(i)) for i, layer in enumerate(layers)]

    def _hook(self, index: int):
        def keep(_module, _inputs, output) -> None:
            self.states[index] = output[0] if isinstance(output, (tuple, list)) else output

        return keep

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.states = [None] * len(self.states)


class HiddenStateKD:
    """``loss_fn(outputs, targets, inputs)`` for ``fit``: ``output_loss(student_out, teacher_out,
    targets) + weight x hidden_state_loss`` of both models' transformer layers.

    Use it as a context manager: it hooks the layers on entry and removes the hooks on exit.
    The student's states come from the forward fit just ran; the teacher runs once per call,
    under no_grad, and its states come from that forward.
    """

    def __init__(self, student: nn.Module, teacher: nn.Module, output_loss: OutputLoss, weight: float = 1.0) -> None:
        from torchslim.hf import transformer_layers

        self.student, self.teacher, self.output_loss, self.weight = student, teacher, output_loss, weight
        self.layers = transformer_layers(student), transformer_layers(teacher)
        missing = [name for name, layers in zip(("student", "teacher"), self.layers, strict=True) if not layers]
        if missing:
            raise ConfigError(f"distill.hidden_states: the {' and the '.join(missing)} {'have' if len(missing) == 2 else 'has'} no transformer layers "
                              "(a Hugging Face model's list of config.num_hidden_layers layers). Hidden-state "
                              "distillation is for hf: models whose pruning kept the hidden width; set hidden_states: false.")
        self._captures: tuple[_Capture, _Capture] | None = None

    def __enter__(self) -> HiddenStateKD:
        self._captures = (_Capture(self.layers[0]), _Capture(self.layers[1]))
        return self

    def __exit__(self, *_exc) -> None:
        for capture in self._captures or ():
            capture.remove()
        self._captures = None

    def __call__(self, outputs, targets, inputs) -> torch.Tensor:
        if self._captures is None:
            raise RuntimeError("HiddenStateKD is used as a context manager: `with HiddenStateKD(...) as loss_fn:`")
        args = as_args(inputs)
        with torch.no_grad():
            teacher_out = self.teacher(*args)
        loss = self.output_loss(_first(outputs), _first(teacher_out), targets)
        student, teacher = (c.states for c in self._captures)
        return loss + self.weight * hidden_state_loss(student, teacher, _attention_mask(args, student))

    @torch.no_grad()
    def check(self, example_inputs: tuple) -> None:
        """ConfigError unless both models' layers give states of the same shapes on these inputs
        (its own hooks, removed before it returns: it may be called inside or outside ``with``)."""
        student = self.student
        device = next(student.parameters()).device
        args = tuple(t.to(device) if isinstance(t, torch.Tensor) else t for t in as_args(example_inputs))
        captures = _Capture(self.layers[0]), _Capture(self.layers[1])
        was_training = student.training
        student.eval()
        try:
            student(*args)
            self.teacher(*args)
            states = [list(c.states) for c in captures]
        finally:
            student.train(was_training)
            for capture in captures:
                capture.remove()
        hidden_state_loss(states[0], states[1], _attention_mask(args, states[0]))


def _attention_mask(args: tuple, states: list) -> torch.Tensor | None:
    """The model's second input when it is a (batch, tokens) mask matching the states."""
    if len(args) < 2 or not states or states[0] is None:
        return None
    mask = args[1]
    return mask if isinstance(mask, torch.Tensor) and tuple(mask.shape) == tuple(states[0].shape[:2]) else None


def _first(output):
    return output[0] if isinstance(output, (tuple, list)) else output
