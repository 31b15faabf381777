"""The .tslim container: exact round trips, every encoding, and refusal of damaged files."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch

import torchslim
from torchslim.errors import ArtifactError
from torchslim.share import _codec, _huffman, load_tslim, read_tslim, save_tslim, share, tslim_info
from torchslim.zoo import create_model


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view({2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])


@pytest.mark.parametrize("count,alphabet", [(1, 1), (7, 3), (5000, 32), (20000, 257)])
def test_huffman_round_trip(count, alphabet):
    rng = np.random.default_rng(count)
    symbols = np.minimum(rng.geometric(0.2, count) - 1, alphabet - 1)
    for fixed in (False, True):
        stream = _huffman.encode(symbols, alphabet, fixed=fixed)
        decoded = _huffman.decode(stream.lengths, stream.bits, stream.offsets, stream.count, alphabet)
        assert np.array_equal(decoded, symbols)
    # Skewed symbols cost fewer bits with Huffman than with fixed-width codes.
    if alphabet > 2:
        assert len(_huffman.encode(symbols, alphabet).bits) < len(_huffman.encode(symbols, alphabet, fixed=True).bits)


def test_every_encoding_is_exact():
    torch.manual_seed(0)
    dense = torch.randn(40, 30)
    few = torch.tensor([-0.0, 0.5, 1.5, float("nan")])[torch.randint(0, 4, (50, 20))]
    sparse = torch.randn(100, 100) * (torch.rand(100, 100) < 0.05)
    sparse_shared = torch.tensor([0.25, -0.75])[torch.randint(0, 2, (300, 64))] * (torch.rand(300, 64) < 0.08)
    cases = {"raw": dense, "codebook": few, "sparse": sparse, "sparse-shared": sparse_shared,
             "int": torch.arange(12).reshape(3, 4), "half": torch.randn(5, 3).half()}
    for label, t in cases.items():
        enc = _codec.encode_tensor(t)
        out = _codec.decode_tensor(enc.encoding, enc.parts, enc.fields, t.dtype, list(t.shape))
        assert torch.equal(_bits(out), _bits(_codec.canonical(t))), label
        assert enc.encoding == label.split("-")[0] or label in ("int", "half")
    # -0.0 is stored as +0.0 (equal under ==); NaN payloads survive.
    few_out = _codec.decode_tensor(*_encoded_args(few), few.dtype, list(few.shape))
    assert not torch.signbit(few_out[few_out == 0]).any() and torch.isnan(few_out).sum() == torch.isnan(few).sum()
    # The sparse shared tensor is far smaller than its dense bytes.
    assert _codec.encode_tensor(sparse_shared).nbytes * 20 < sparse_shared.numel() * 4


def _encoded_args(t):
    enc = _codec.encode_tensor(t)
    return enc.encoding, enc.parts, enc.fields


@pytest.fixture(scope="module")
def shared_model():
    torch.manual_seed(0)
    model = create_model("lenet-300-100").eval()
    with torch.no_grad():
        for layer in (model.net[1], model.net[3]):
            layer.weight.mul_(torch.rand_like(layer.weight) < 0.1)  # 90 % zeros
    return share(model, {"bits": 4})


@pytest.fixture(scope="module")
def saved(shared_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("good") / "m.tslim"
    return save_tslim(shared_model, path, example_inputs=(torch.randn(2, 1, 8, 8),))


def test_load_is_bit_identical_and_runs_alone(shared_model, saved):
    x = torch.randn(3, 1, 8, 8)
    path = saved
    loaded = load_tslim(path)
    state = shared_model.state_dict()
    assert set(loaded.state_dict()) == set(state)
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(_bits(tensor), _bits(state[name])), name
    assert torch.equal(loaded(x), shared_model(x))
    assert loaded(torch.randn(17, 1, 8, 8)).shape == (17, 10)  # dynamic batch survives
    fn = torchslim.load(path)  # through the manifest and the tslim runtime
    assert torch.equal(fn(x), shared_model(x))
    info = tslim_info(path)
    assert info["file_bytes"] == path.stat().st_size
    assert info["structure_bytes"] + info["weight_bytes"] + info["header_bytes"] == info["file_bytes"]
    # 4-bit shared, 90 % sparse: far below the 4 bytes per weight of fp32.
    assert info["file_bytes"] * 8 < sum(p.numel() for p in shared_model.parameters()) * 4


def test_fixed_coding_is_larger_but_loads_the_same(shared_model, tmp_path):
    x = torch.randn(2, 1, 8, 8)
    huff = save_tslim(shared_model, tmp_path / "h.tslim", example_inputs=(x,))
    fixed = save_tslim(shared_model, tmp_path / "f.tslim", example_inputs=(x,), coding="fixed")
    assert fixed.stat().st_size > huff.stat().st_size
    assert torch.equal(load_tslim(fixed)(x), load_tslim(huff)(x))


def test_any_model_round_trips(tmp_path):
    torch.manual_seed(0)
    model = create_model("digits-cnn").eval()  # conv + batch norm buffers, unshared
    x = torch.randn(2, 1, 8, 8)
    path = save_tslim(model, tmp_path / "cnn.tslim", example_inputs=(x,))
    assert torch.equal(load_tslim(path)(x), model(x))
    kinds = {e["name"]: e["kind"] for e in read_tslim(path).header["tensors"]}
    assert kinds["features.0.1.running_mean"] == "buffer"


@pytest.fixture(scope="module")
def good_file(saved):
    return saved.read_bytes()


def _refused(tmp_path, data: bytes, match: str):
    path = tmp_path / "bad.tslim"
    path.write_bytes(data)
    with pytest.raises(ArtifactError, match=match):
        load_tslim(path)


def test_truncated_file_is_refused(good_file, tmp_path):
    for cut in (3, 20, len(good_file) // 2, len(good_file) - 1):
        _refused(tmp_path, good_file[:cut], "truncated|checksum")


def test_flipped_byte_is_refused_anywhere(good_file, tmp_path):
    # Positions spread over preamble, header and every payload section.
    for pos in np.linspace(9, len(good_file) - 1, 25).astype(int):
        data = bytearray(good_file)
        data[pos] ^= 0x40
        _refused(tmp_path, bytes(data), "not a valid .tslim")


def test_wrong_version_and_magic_are_refused(good_file, tmp_path):
    _refused(tmp_path, good_file[:5] + bytes([99]) + good_file[6:], "format version 99")
    _refused(tmp_path, b"PK\x03\x04\x00" + good_file[5:], "wrong magic")
    _refused(tmp_path, good_file + b"\0", "trailing bytes")


def test_preamble_layout_is_stable(good_file):
    magic, version, header_len, _ = struct.unpack_from("<5sBII", good_file)
    assert (magic, version) == (b"TSLIM", 1)
    assert 0 < header_len < len(good_file)
    assert b"pickle" not in good_file and b"\x80\x02" not in good_file[:14]


def test_fp16_raw_storage_is_opt_in_and_close(tmp_path):
    torch.manual_seed(0)
    model = create_model("digits-mlp").eval()  # dense, unshared: every tensor stored raw
    x = torch.randn(2, 1, 8, 8)
    exact = save_tslim(model, tmp_path / "a.tslim", example_inputs=(x,))
    half = save_tslim(model, tmp_path / "b.tslim", example_inputs=(x,), raw_precision="fp16")
    assert half.stat().st_size < 0.6 * exact.stat().st_size
    assert torch.equal(load_tslim(exact)(x), model(x))
    torch.testing.assert_close(load_tslim(half)(x), model(x), atol=1e-2, rtol=1e-2)
