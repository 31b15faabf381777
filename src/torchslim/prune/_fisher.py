"""Fisher importance (``importance: fisher``): what removing one attention head or neuron does
to the model's output, measured on training batches instead of read off the weights.

Every channel that a Linear layer reads gets a mask ``m = 1`` on that layer's input, one per
sample. Removing the channel is ``m: 1 -> 0``; the score is the sum over samples of the
squared per-sample gradient ``(dL/dm)^2`` (the mask's empirical Fisher information). A head's
channels go together, so with ``prune_heads`` their gradients are summed per sample before
squaring. The gradient of a mask is ``sum over tokens of activation x gradient``; padding
tokens get none, since the attention mask and the mean pooling already ignore them.

The objective L:

- classification: the cross-entropy with the labels;
- embedding data (no labels): ``L = u . normalize(output)`` with ``u ~ N(0, I)`` drawn per
  sample. ``E_u[(dL/dm)^2] = |d e/dm|^2`` for the normalized embedding ``e``, and removing the
  channel moves ``e`` by about ``d e/dm``, which costs ``1 - cos ~ |d e/dm|^2 / 2``: the score
  is a second-order estimate of the distillation loss the removal causes. The first-order
  Taylor score of that loss (``taylor``) is useless here: at the unpruned model, which *is*
  the teacher, 1 - cosine is at its minimum and every gradient is zero.

Cost: one forward and one backward per scoring batch (``taylor_batches``), before each round.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from torchslim.data import as_args, to_device
from torchslim.errors import UnsupportedError
from torchslim.prune._attention import Attention


class FisherImportance:
    """Torch-Pruning importance (``__call__(group)`` -> one score per channel) from the mask
    gradients that ``collect`` gathered: a group's channels are scored through the Linear
    layers that read them."""

    def __init__(self, attention: list[Attention], whole_heads: bool) -> None:
        self.gradients: dict[nn.Linear, torch.Tensor] = {}  # layer -> (samples, in_features)
        self._attention = {p: att for att in attention for p in att.projections}
        self._whole_heads = whole_heads

    def collect(self, model: nn.Module, batches: Iterable, task: str, *, device: torch.device, seed: int = 0) -> None:
        """Per-sample mask gradients of every Linear's inputs over ``batches``."""
        generator = torch.Generator().manual_seed(seed)
        per_layer: dict[nn.Linear, list[torch.Tensor]] = {}
        model.eval()  # no dropout, BN statistics untouched
        with torch.enable_grad(), _input_masks(model) as masks:
            for inputs, targets in batches:
                masks.clear()
                out = model(*as_args(to_device(inputs, device)))
                loss = _objective(out, targets, task, generator, device)
                grads = torch.autograd.grad(loss, [m for _, m in masks], allow_unused=True)
                batch: dict[nn.Linear, torch.Tensor] = {}
                for (layer, _), g in zip(masks, grads, strict=True):
                    if g is not None:  # a layer called twice (shared weights) adds its calls
                        g = g.detach().reshape(g.shape[0], -1).float().cpu()
                        batch[layer] = batch[layer] + g if layer in batch else g
                for layer, g in batch.items():
                    per_layer.setdefault(layer, []).append(g)
        self.gradients = {layer: torch.cat(gs) for layer, gs in per_layer.items()}

    def __call__(self, group) -> torch.Tensor:
        import torch_pruning as tp

        heads = next((self._attention[dep.target.module] for dep, _ in group if dep.target.module in self._attention), None)
        scores, found = torch.zeros(len(group[0].idxs)), False
        for i, (dep, idxs) in enumerate(group):
            layer = dep.target.module
            if dep.handler != tp.pruner.function.prune_linear_in_channels or layer not in self.gradients:
                continue
            per_channel = channel_scores(self.gradients[layer], heads.heads if heads and self._whole_heads else 1)
            pairs = [(r, c) for r, c in zip(group[i].root_idxs, idxs, strict=True) if r is not None]
            roots, channels = (torch.as_tensor(list(t)) for t in zip(*pairs, strict=True))
            scores.scatter_add_(0, roots, per_channel[channels])
            found = True
        if not found:
            raise UnsupportedError(
                f"prune.importance: fisher scores channels through the Linear layer that reads them, and the channels of "
                f"{type(group[0].dep.target.module).__name__} are read by none (a convolution network); use l1, l2 or taylor."
            )
        return scores


def channel_scores(gradients: torch.Tensor, heads: int = 1) -> torch.Tensor:
    """Fisher score per input channel from per-sample mask gradients ``(samples, channels)``;
    with ``heads > 1`` the channels are whole heads' slices and each gets its head's score."""
    if heads == 1:
        return gradients.pow(2).sum(0)
    per_head = gradients.reshape(gradients.shape[0], heads, -1).sum(-1).pow(2).sum(0)
    return per_head.repeat_interleave(gradients.shape[1] // heads)


def _objective(out, targets, task: str, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    out = out[0] if isinstance(out, (tuple, list)) else out
    if task == "classification":
        return F.cross_entropy(out, targets.to(device), reduction="sum")  # a sum: per-sample gradients stay per sample
    embedding = F.normalize(out.flatten(1).float(), dim=1)
    direction = torch.randn(embedding.shape, generator=generator).to(device)
    return (embedding * direction).sum()


class _input_masks:
    """Context manager: every Linear multiplies its input by a fresh per-sample mask of ones;
    the list it yields holds ``(layer, mask)`` for the calls of the current batch."""

    def __init__(self, model: nn.Module) -> None:
        self.layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
        self.masks: list[tuple[nn.Linear, torch.Tensor]] = []
        self.handles: list = []

    def _hook(self, layer: nn.Linear, args: tuple):
        x = args[0]
        if x.dim() < 2:
            return None
        mask = torch.ones(x.shape[0], *([1] * (x.dim() - 2)), x.shape[-1], device=x.device, dtype=x.dtype, requires_grad=True)
        self.masks.append((layer, mask))
        return (x * mask, *args[1:])

    def __enter__(self) -> list[tuple[nn.Linear, torch.Tensor]]:
        self.handles = [layer.register_forward_pre_hook(self._hook) for layer in self.layers]
        return self.masks

    def __exit__(self, *exc) -> None:
        for handle in self.handles:
            handle.remove()
        self.masks.clear()
