"""Skipping trailing padding (torchslim.core.padding): the partition, the wrapper, the check
written into manifests, and an ONNX artifact end to end."""

from __future__ import annotations

import itertools
import random

import pytest
import torch
import torch.nn as nn

import torchslim
from tests.hf.test_hf import _tiny_embedder
from torchslim.core.padding import SkipPadding, inert_padding, plan_groups, right_padded_lengths
from torchslim.export import ArtifactInfo


def _cost(groups, lengths, call_cost):
    return sum(len(g) * max(lengths[i] for i in g) + call_cost for g in groups)


def _best_cost(lengths, call_cost):
    """Brute force over every split of the length-sorted rows into contiguous groups."""
    ordered = sorted(range(len(lengths)), key=lambda i: lengths[i])
    best = None
    for cuts in itertools.product([False, True], repeat=len(lengths) - 1):
        groups, current = [], [ordered[0]]
        for cut, row in zip(cuts, ordered[1:], strict=True):
            if cut:
                groups.append(current)
                current = []
            current.append(row)
        groups.append(current)
        cost = _cost(groups, lengths, call_cost)
        best = cost if best is None else min(best, cost)
    return best


def test_plan_groups_is_the_least_cost_partition_and_covers_every_row_once():
    rng = random.Random(0)
    for _ in range(40):
        lengths = [rng.randint(1, 128) for _ in range(rng.randint(1, 8))]
        groups = plan_groups(lengths, call_cost=8)
        assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
        assert _cost(groups, lengths, 8) == _best_cost(lengths, 8)
    assert plan_groups([13] * 32) == [list(range(32))]  # one length: one call


def test_right_padded_lengths_accepts_only_ones_then_zeros():
    assert right_padded_lengths(torch.tensor([[1, 1, 0], [1, 0, 0]])).tolist() == [2, 1]
    assert right_padded_lengths(torch.tensor([[0, 1, 1], [1, 1, 1]])) is None  # left padding
    assert right_padded_lengths(torch.tensor([[1, 0, 1]])) is None  # a hole
    assert right_padded_lengths(torch.tensor([[0, 0, 0]])) is None  # an empty row


class _Recorder(nn.Module):
    """Mean of the ids under the mask (padding-free by construction); records call shapes."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []
        self.manifest = "the wrapped model's"

    def forward(self, ids, mask):
        self.shapes.append(tuple(ids.shape))
        pooled = (ids * mask).sum(1, keepdim=True) / mask.sum(1, keepdim=True)
        return pooled.float(), ids[:, :1].float()


def _batch(lengths, width=128):
    lengths = torch.tensor(lengths)
    mask = (torch.arange(width)[None] < lengths[:, None]).long()
    ids = torch.randint(1, 100, (len(lengths), width)) * mask
    return ids, mask


def test_skip_padding_cuts_each_group_to_its_longest_row_and_restores_the_order():
    inner = _Recorder()
    model = SkipPadding(inner, mask_input=1)
    ids, mask = _batch([3, 128, 7, 64, 5])
    got, expected = model(ids, mask), inner(ids, mask)
    assert all(torch.allclose(a, b) for a, b in zip(got, expected, strict=True))  # tuple outputs, caller's order
    assert inner.shapes[:-1] == [(3, 7), (1, 64), (1, 128)]
    assert model.manifest == "the wrapped model's"  # attributes pass through


def test_skip_padding_passes_through_what_it_must_not_touch():
    inner = _Recorder()
    model = SkipPadding(inner, mask_input=1)
    ids, mask = _batch([5, 9])
    model(ids, mask.flip(1))  # left padding
    model(ids[:, :9], mask[:, :9].fill_(1))  # no padding at all
    model(ids, mask=mask)  # keywords
    assert inner.shapes == [(2, 128), (2, 9), (2, 128)]


def test_a_runtime_that_compiles_per_shape_gets_whole_batches():
    inner = _Recorder()
    inner.shape_specialized = True  # as torchslim.runtime.compiled.CompiledModel
    ids, mask = _batch([3, 128, 7, 64, 5])
    SkipPadding(inner, mask_input=1)(ids, mask)
    ids, mask = _batch([3, 40, 7])
    SkipPadding(inner, mask_input=1)(ids, mask)
    assert inner.shapes == [(5, 128), (3, 40)]  # one call each, cut to the longest row


def test_an_artifact_that_takes_one_length_gets_its_inputs_uncut():
    from torchslim.core.manifest import InputSpec

    inner = _Recorder()
    inner.manifest = type("M", (), {"inputs": [InputSpec([2, 16], "int64", "ids", {"0": [1, 64]}),
                                               InputSpec([2, 16], "int64", "mask", {"0": [1, 64]})]})()
    ids, mask = _batch([5, 9], width=16)
    SkipPadding(inner, mask_input=1)(ids, mask)
    assert inner.shapes == [(2, 16)]


def test_inert_padding_is_measured_not_assumed():
    ids, mask = _batch([5, 9], width=16)
    embedder = _tiny_embedder()
    assert inert_padding(embedder, (ids, mask), ["input_ids", "attention_mask"]) == {
        "mask_input": "attention_mask", "input_index": 1, "skip": True}

    class PoolsPadding(nn.Module):  # averages every position, padding included
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(100, 4)

        def forward(self, ids, mask):
            return self.embed(ids).mean(1)

    assert inert_padding(PoolsPadding(), (ids, mask), ["input_ids", "attention_mask"]) is None
    assert inert_padding(nn.Linear(4, 2), (torch.randn(2, 4),)) is None  # no token inputs


def test_an_onnx_artifact_of_a_mask_pooled_encoder_skips_padding(tmp_path):
    embedder = _tiny_embedder()
    example = _batch([5, 9], width=16)
    path = torchslim.export(embedder, tmp_path / "onnx", example, {"format": "onnx"},
                            info=ArtifactInfo(task="embedding", input_names=["input_ids", "attention_mask"]))
    model = torchslim.load(path)
    assert isinstance(model, SkipPadding)
    assert model.manifest.extra["padding"]["mask_input"] == "attention_mask"
    ids, mask = _batch([3, 16, 7, 11], width=16)
    with torch.no_grad():
        assert torch.allclose(model(ids, mask), embedder(ids, mask), atol=1e-4)


@pytest.mark.parametrize("padded", [False, True])
def test_skipping_leaves_outputs_where_the_full_call_puts_them(padded):
    inner = _Recorder()
    ids, mask = _batch([4, 4, 4] if not padded else [4, 2, 3], width=8)
    first = SkipPadding(inner, mask_input=1)(ids, mask)[0]
    assert torch.allclose(first, inner(ids, mask)[0])
