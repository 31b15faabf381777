"""Padding a model never looks at is not computed.

Text arrives padded: a tokenizer called with ``padding="max_length"`` sends 128 tokens for a
13-token sentence, and a batch comes padded to its longest sentence. For a model whose output
is pooled under the attention mask (a sentence embedding, a [CLS] classifier) the padded
positions change nothing: real tokens attend only to real tokens and pooling skips the rest.
Such an artifact can run on the real tokens alone:

- one length in the batch (or one call): every token input is cut to the longest real row;
- mixed lengths: the rows are sorted by length and split into groups where that saves more
  than a call costs (not on a runtime that compiles per shape: the ``compile`` runtime) (an exact partition by dynamic programming; cost = rows x longest row of
  the group, plus :data:`CALL_COST_TOKENS` per call), each group runs cut to its own longest
  row, and the outputs come back in the caller's order.

Whether a model qualifies is *measured* when its artifact is written (:func:`inert_padding`):
its output on the example must not change (beyond float rounding) when the padding is cut
off. The manifest records the mask input under ``extra["padding"]`` (older torchslim ignores
it and simply runs the padding), and ``torchslim.load`` wraps the artifact in
:class:`SkipPadding`. A mask that is not one run of ones then zeros per row (left padding,
packed sequences, an empty row) is passed through untouched, as is a call with keywords.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import torch

from torchslim.core.export import is_token_input

# A chosen, conservative price of one extra call, in tokens of one row: from ORT on MiniLM (b1 x 13 tokens
# ~2 ms, ~0.15 ms per token-row in a batch) a call costs ~2-4 token-rows; 8 splits only when it clearly pays.
CALL_COST_TOKENS = 8
_RTOL, _ATOL = 1e-3, 1e-4
SKIP_PADDING_NOTE = ("runs the real tokens only: trailing padding is cut off before the model runs (its output "
                     "does not depend on it, checked when the artifact was written); the baseline does the same")  # float rounding of a shorter attention softmax / pooling sum


def mask_index(example: Sequence[Any], names: Sequence[str] | None = None) -> int | None:
    """The attention mask among ``example``: the token input named like one, else (unnamed)
    the last token input after the first whose values are all 0 or 1."""
    tokens = [i for i, t in enumerate(example) if is_token_input(t)]
    if names:
        named = [i for i in tokens if i < len(names) and "mask" in names[i].lower()]
        return named[0] if named else None
    binary = [i for i in tokens[1:] if bool(((example[i] == 0) | (example[i] == 1)).all())]
    return binary[-1] if binary else None


def right_padded_lengths(mask: torch.Tensor) -> torch.Tensor | None:
    """Real tokens per row when every row of ``mask`` is ones then zeros (and not empty), else None."""
    lengths = mask.sum(dim=1)
    positions = torch.arange(mask.shape[1], device=mask.device)
    if bool((lengths < 1).any()) or not torch.equal(mask != 0, positions[None, :] < lengths[:, None]):
        return None
    return lengths


def cut(inputs: Sequence[Any], length: int, rows: torch.Tensor | None = None) -> tuple[Any, ...]:
    """Every token input cut to ``length`` tokens (and to ``rows`` of the batch, when given);
    other inputs keep their sequence axes (only their rows are selected)."""
    out = []
    for t in inputs:
        if isinstance(t, torch.Tensor) and rows is not None:
            t = t.index_select(0, rows.to(t.device))
        out.append(t[:, :length] if is_token_input(t) else t)
    return tuple(out)


def _same_outputs(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and torch.allclose(a.float(), b.float(), rtol=_RTOL, atol=_ATOL)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)) and len(a) == len(b):
        return all(_same_outputs(x, y) for x, y in zip(a, b, strict=True))
    return False


def inert_padding(model: Any, example: tuple[Any, ...], names: Sequence[str] | None = None) -> dict[str, Any] | None:
    """``{"mask_input": name, "skip": True}`` when ``model``'s output on ``example`` is the
    same with its trailing padding cut off (tried on the example's own padding, or on its
    second half masked out when it has none); None when it changes, or cannot be checked."""
    index = mask_index(example, names)
    if index is None:
        return None
    mask = example[index]
    length = mask.shape[1]
    lengths = right_padded_lengths(mask)
    if lengths is None or length < 2:
        return None
    if int(lengths.max()) == length:  # no padding to cut in the example: pad its second half
        masked = mask.clone()
        masked[:, length // 2:] = 0
        example = (*example[:index], masked, *example[index + 1:])
    shorter = int(right_padded_lengths(example[index]).max())
    training = getattr(model, "training", False)
    try:
        if training:
            model.eval()  # dropout would make any two calls differ
        with torch.no_grad():
            same = _same_outputs(model(*example), model(*cut(example, shorter)))
    except Exception:  # a model that refuses a shorter sequence does not qualify
        return None
    finally:
        if training:
            model.train()
    name = names[index] if names and index < len(names) else f"input_{index}"
    return {"mask_input": name, "input_index": index, "skip": True} if same else None


def padding_extra(model: Any, example: tuple[Any, ...], names: Sequence[str] | None = None) -> dict[str, Any]:
    """The manifest ``extra`` entry for :func:`inert_padding` (empty when it does not apply)."""
    record = inert_padding(model, example, names)
    return {"padding": record} if record else {}


def plan_groups(lengths: Sequence[int], call_cost: int = CALL_COST_TOKENS) -> list[list[int]]:
    """Row indices grouped by length so that sum(rows x longest) + call_cost x groups is least.
    An optimal group is a run of the length-sorted rows and never splits rows of one length, so
    the dynamic programme runs over the distinct lengths (at most the model's maximum length,
    whatever the batch size)."""
    counts = Counter(lengths)
    distinct = sorted(counts)
    rows_up_to = [0]  # rows of length <= distinct[i - 1]
    for length in distinct:
        rows_up_to.append(rows_up_to[-1] + counts[length])
    best, start = [0] + [None] * len(distinct), [0] * (len(distinct) + 1)
    for end in range(1, len(distinct) + 1):
        for begin in range(end):
            cost = best[begin] + (rows_up_to[end] - rows_up_to[begin]) * distinct[end - 1] + call_cost
            if best[end] is None or cost < best[end]:
                best[end], start[end] = cost, begin
    group_of, end, groups = {}, len(distinct), 0
    while end > 0:  # walk the cuts back: each distinct length -> its group (numbered from the end)
        for length in distinct[start[end]:end]:
            group_of[length] = groups
        groups, end = groups + 1, start[end]
    out: list[list[int]] = [[] for _ in range(groups)]
    for i, n in enumerate(lengths):
        out[groups - 1 - group_of[n]].append(i)
    return out


def _gather(outputs: list[Any], inverse: torch.Tensor) -> Any:
    """The groups' outputs, concatenated and put back in the caller's row order."""
    first = outputs[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(outputs).index_select(0, inverse.to(first.device))
    return type(first)(_gather([o[i] for o in outputs], inverse) for i in range(len(first)))


class SkipPadding:
    """A loaded artifact that runs only the real tokens of its inputs (module docstring).
    Everything else (``manifest``, ``precompile``, ...) is the wrapped model's."""

    def __init__(self, model: Any, mask_input: int, call_cost: int = CALL_COST_TOKENS) -> None:
        self.model, self.mask_input, self.call_cost = model, mask_input, call_cost
        # A runtime that compiles a graph per input shape (``shape_specialized``) would compile
        # one per group size: it gets the whole batch, only cut to its longest row.
        self.split = not getattr(model, "shape_specialized", False)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def _takes(self, inputs: tuple[Any, ...]) -> bool:
        """Whether the artifact's manifest accepts a shorter sequence (an engine built for one
        length does not: it gets its inputs uncut)."""
        specs = getattr(getattr(self.model, "manifest", None), "inputs", None)
        if not specs or len(specs) != len(inputs):
            return True
        return all(spec.accepts(t) for spec, t in zip(specs, inputs, strict=True) if isinstance(t, torch.Tensor))

    def __call__(self, *inputs: Any, **named: Any) -> Any:
        mask = inputs[self.mask_input] if not named and self.mask_input < len(inputs) else None
        if not is_token_input(mask) or bool(mask[:, -1].all()):  # nothing to cut (the usual fast exit)
            return self.model(*inputs, **named)
        lengths = right_padded_lengths(mask)
        if lengths is None or not self._takes(cut(inputs, 1)):
            return self.model(*inputs)
        groups = plan_groups(lengths.tolist(), self.call_cost) if self.split else [list(range(len(lengths)))]
        if len(groups) == 1:
            return self.model(*cut(inputs, int(lengths.max())))
        outputs, order = [], []
        for rows in groups:
            index = torch.tensor(rows, dtype=torch.long)
            outputs.append(self.model(*cut(inputs, int(lengths[index.to(lengths.device)].max()), index)))
            order.extend(rows)
        return _gather(outputs, torch.argsort(torch.tensor(order)))
