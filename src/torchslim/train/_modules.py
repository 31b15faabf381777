"""Model-side helpers of the loop: train/eval switching that also works on exported graphs,
activation checkpointing of chosen blocks, and unwrapping DDP/DataParallel/compile wrappers."""

from __future__ import annotations

import fnmatch
import functools
from collections.abc import Callable

import torch
import torch.nn as nn

from torchslim.core.export import is_exported_graph  # re-exported: tests and callers name it here
from torchslim.errors import ConfigError


def set_mode(model: nn.Module, training: bool) -> None:
    """``model.train(training)``, or the PT2E equivalent for exported graphs (which rewrites
    their dropout/batch-norm ops instead of flipping a flag)."""
    if is_exported_graph(model):
        _move_exported(model, training)
        try:  # also flip submodules' flags (observers, fake-quantizers) where the graph allows it
            model.train(training)
        except NotImplementedError:
            pass
        return
    model.train(training)


def _move_exported(model: nn.Module, training: bool) -> None:
    try:
        from torchao.quantization.pt2e import (
            move_exported_model_to_eval,
            move_exported_model_to_train,
        )
    except ImportError:  # older stacks: the torch.ao copy
        from torch.ao.quantization import move_exported_model_to_eval, move_exported_model_to_train
    (move_exported_model_to_train if training else move_exported_model_to_eval)(model)


def unwrap(model: nn.Module) -> nn.Module:
    """The user's module inside DDP / DataParallel / torch.compile wrappers."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def enable_activation_checkpointing(model: nn.Module, patterns: list[str]) -> Callable[[], None]:
    """Recompute the activations of modules matching ``patterns`` in backward.

    Saves the memory of those blocks' intermediate activations at the cost of one extra
    forward of them per step. Uses non-reentrant checkpointing (``use_reentrant=False``), which
    supports keyword arguments and inputs that do not require grad. The module's state_dict
    is untouched (its instance ``forward`` is wrapped); returns a function that undoes it.
    """
    from torch.utils.checkpoint import checkpoint

    named = dict(model.named_modules())
    chosen: dict[str, nn.Module] = {}
    for pattern in patterns:
        hits = [n for n in named if n and fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            raise ConfigError(f"checkpoint_blocks: no module of {type(model).__name__} matches {pattern!r}. Module names look like {', '.join(list(named)[1:6])}.")
        chosen.update({n: named[n] for n in hits})
    # A block inside an already-checkpointed block would be recomputed twice; keep the outermost.
    outer = {n: m for n, m in chosen.items() if not any(n.startswith(o + ".") for o in chosen if o != n)}
    originals = {}
    for name, module in outer.items():
        original = module.forward
        originals[name] = (module, "forward" in module.__dict__, original)

        @functools.wraps(original)
        def checkpointed(*args, _forward=original, **kwargs):
            if torch.is_grad_enabled():
                return checkpoint(_forward, *args, use_reentrant=False, **kwargs)
            return _forward(*args, **kwargs)

        module.forward = checkpointed

    def restore() -> None:
        for module, had_instance_forward, original in originals.values():
            if had_instance_forward:
                module.forward = original
            else:
                del module.forward

    return restore
