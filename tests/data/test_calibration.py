"""``torchslim.data.calibration_batches``: the one source of calibration data for every int8
path (PT2E static/QAT, ONNX Runtime, OpenVINO)."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from torchslim.data import DataBundle, calibration_batches, signature_of
from torchslim.errors import ConfigError, DataError


def _bundle() -> DataBundle:
    x = torch.arange(40, dtype=torch.float32).reshape(40, 1).repeat(1, 3)  # row i holds i
    val = TensorDataset(torch.full((4, 3), -1.0), torch.zeros(4, dtype=torch.long))
    return DataBundle("rows", TensorDataset(x, torch.zeros(40, dtype=torch.long)), val, val)


def test_a_bundle_gives_its_train_split_shuffled_with_the_seed():
    signature = signature_of((torch.zeros(2, 3),))
    first = calibration_batches(_bundle(), signature, 2, batch_size=8, seed=0)
    assert len(first) == 2 and all(len(b) == 1 and b[0].shape == (8, 3) for b in first)
    rows = torch.cat([b[0][:, 0] for b in first])
    assert rows.min() >= 0  # never the val/test rows (-1)
    assert not torch.equal(rows, torch.arange(16.0))  # not file order: a class-sorted folder would skew
    again = calibration_batches(_bundle(), signature, 2, batch_size=8, seed=0)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, again, strict=True))


def test_iterables_and_tensors_are_taken_as_they_come_with_token_lengths_free():
    ids = torch.ones(2, 16, dtype=torch.long)
    signature = signature_of((ids, ids))
    batches = [(torch.ones(4, 9, dtype=torch.long), torch.ones(4, 9, dtype=torch.long))] * 5
    assert len(calibration_batches(batches, signature, 3)) == 3  # any batch size, any sequence length
    single = calibration_batches(torch.zeros(5, 3), signature_of((torch.zeros(2, 3),)), 4)
    assert len(single) == 1 and single[0][0].shape == (5, 3)


@pytest.mark.parametrize(
    ("source", "error", "fragment"),
    [
        (None, ConfigError, "pass data=DataBundle"),
        ([], DataError, "calibration data is empty"),
        ([(torch.zeros(4, 3),), (torch.zeros(4, 3, dtype=torch.float64),)], DataError, "Calibration batch 1 is \\(float64"),
        ([(torch.zeros(4, 5),)], DataError, r"model takes \(float32\[N, 3\]\)"),
        ([(torch.zeros(4, 3), torch.zeros(4, 3))], DataError, "Calibration batch 0"),
    ],
)
def test_bad_calibration_data_is_named(source, error, fragment):
    with pytest.raises(error, match=fragment):
        calibration_batches(source, signature_of((torch.zeros(2, 3),)), 4, how_to_pass="data=DataBundle")
