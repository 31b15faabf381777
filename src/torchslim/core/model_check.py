"""One forward pass of the user's classifier on a sample batch, before any work is spent on it.

A model that has no parameters, takes another number of inputs than the data gives, raises
in its own ``forward`` or returns something other than a tensor of class scores is the
user's to fix: each is a ``ModelError`` (CLI exit 2) naming the cause and the fix, instead of
a traceback from deep inside training, export or measurement.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn as nn

from torchslim.errors import ModelError


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


def _arity_problem(model: nn.Module, n_inputs: int) -> str | None:
    try:
        signature = inspect.signature(model.forward)
    except (TypeError, ValueError):  # builtins, C extensions: let the call decide
        return None
    try:
        signature.bind(*([None] * n_inputs))
    except TypeError:
        params = [p.name for p in signature.parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        return f"its forward takes ({', '.join(params)}) but each sample of the data is {n_inputs} input(s)"
    return None


def check_classifier(model: nn.Module, example_inputs: tuple[torch.Tensor, ...], *, num_classes: int | None,
                     what: str = "your model") -> None:
    if not any(True for _ in model.parameters()):
        raise ModelError(f"{what} has no parameters: there is nothing to train, prune or quantize. "
                         "Register its layers as nn.Module attributes (not in a plain list; use nn.ModuleList).")
    problem = _arity_problem(model, len(example_inputs))
    if problem:
        raise ModelError(f"{what} cannot take the data: {problem}. Give a model whose forward takes one "
                         "batch of inputs, or data whose samples match its forward.")
    shapes = ", ".join(str(list(t.shape)) for t in example_inputs)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(*example_inputs)
    except Exception as e:
        raise ModelError(f"{what} fails on a batch of the data (inputs shaped {shapes}): its forward raised "
                         f"{_first_line(e)}. Check that the model fits the data's input shape; call it on "
                         "one batch yourself to see the full error.") from None
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor):
        raise ModelError(f"{what} returns a {type(out).__name__}, not a tensor. torchslim needs a classifier's "
                         "class scores (logits) as one tensor shaped [batch, classes]; wrap the model so its "
                         "forward returns that tensor (e.g. outputs['logits']).")
    batch = example_inputs[0].shape[0] if example_inputs else None
    if out.dim() != 2 or out.shape[0] != batch:
        raise ModelError(f"{what} returns a tensor shaped {list(out.shape)} for a batch of {batch}; a classifier "
                         "must return class scores shaped [batch, classes].")
    if num_classes is not None and out.shape[1] < num_classes:
        raise ModelError(f"{what} gives {out.shape[1]} class scores but the data has {num_classes} classes "
                         f"(labels 0..{num_classes - 1}); give the model {num_classes} outputs.")
