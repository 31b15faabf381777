"""A hostile .tslim file: every size in its header is checked before anything is allocated or
decompressed for it, and tensors that do not fit the graph are refused at load (exit 2), not
as a shape error inside the first forward call (exit 1)."""

from __future__ import annotations

import copy
import json
import struct
import tracemalloc
import zlib

import pytest
import torch
import torch.nn as nn

import torchslim
from torchslim.cli import run
from torchslim.core.manifest import read_manifest, write_manifest
from torchslim.errors import ArtifactError
from torchslim.share import _format, save_tslim
from torchslim.share._dictionary import ZDICT, compress, decompress


@pytest.fixture(scope="module")
def tslim(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tslim")
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 4), nn.ReLU(), nn.Linear(4, 10))
    return save_tslim(model, folder / "m.tslim", example_inputs=(torch.randn(2, 1, 8, 8),))


def _parts(path):
    data = path.read_bytes()
    _, _, length, _ = _format._PREAMBLE.unpack_from(data)
    start = _format._PREAMBLE.size
    return json.loads(decompress(data[start:start + length])), data[start + length:]


def _rewrite(original, out, header=None, header_bytes=None):
    """A copy of ``original`` with another header, CRCs and manifest digest made valid again:
    what a hostile author would do (the checksums prove nothing against one)."""
    _, payload = _parts(original)
    blob = header_bytes if header_bytes is not None else compress(json.dumps(header).encode())
    head = struct.pack("<BI", _format.VERSION, len(blob))
    out.write_bytes(_format._PREAMBLE.pack(_format.MAGIC, _format.VERSION, len(blob), zlib.crc32(head + blob))
                    + blob + payload)
    write_manifest(out, read_manifest(original))
    return out


def test_a_header_claiming_gigabytes_is_refused_before_allocating(tslim, tmp_path):
    header, _ = _parts(tslim)
    header["meta"]["inputs"] = [[[30000, 30000], "float32"]]  # 3.4 GB of zeros for a 1 KB file
    bad = _rewrite(tslim, tmp_path / "huge.tslim", header)
    with pytest.raises(ArtifactError, match=r"damaged or hostile.*3433 MiB"):  # before rebuild_program's zeros
        torchslim.load(bad)


@pytest.mark.parametrize("field, value", [("shape", [100000, 100000]), ("offset", 10**12), ("shape", [-1, 64])])
def test_a_tensor_entry_out_of_bounds_is_refused(tslim, tmp_path, field, value):
    header, _ = _parts(tslim)
    header["tensors"][0][field] = value
    with pytest.raises(ArtifactError, match="damaged or hostile"):
        torchslim.load(_rewrite(tslim, tmp_path / "bad.tslim", header))


def test_a_header_that_decompresses_to_a_gibibyte_is_refused(tslim, tmp_path, monkeypatch):
    monkeypatch.setattr(_format, "MAX_HEADER_BYTES", 1 << 20)  # the same check, a smaller bomb (fast)
    c = zlib.compressobj(9, zdict=ZDICT)
    bomb = c.compress(b'{"pad":"' + b" " * (8 << 20)) + c.compress(b'"}') + c.flush()
    assert len(bomb) < 16 << 10
    bad = _rewrite(tslim, tmp_path / "bomb.tslim", header_bytes=bomb)
    tracemalloc.start()
    with pytest.raises(ArtifactError, match="header decompresses to more than 1 MiB"):
        torchslim.load(bad)
    assert tracemalloc.get_traced_memory()[1] < 4 << 20  # stopped at the limit, never expanded
    tracemalloc.stop()


def test_a_huffman_count_beyond_its_bits_is_refused():
    from torchslim.share import _huffman

    with pytest.raises(_huffman.HuffmanError, match="cannot fit"):
        _huffman.decode(b"\x11", b"\x00", b"", 10**9, 2)


def test_tensors_that_do_not_fit_the_graph_exit_2(tslim, tmp_path, capsys):
    header, _ = _parts(tslim)
    bias = next(e for e in header["tensors"] if e["name"] == "1.bias")
    bias["shape"] = [2, 2]  # same bytes, another shape
    bad = _rewrite(tslim, tmp_path / "shape.tslim", copy.deepcopy(header))
    with pytest.raises(ArtifactError, match=r"tensor '1.bias' is float32\[2, 2\] but the model graph expects float32\[4\]"):
        torchslim.load(bad)
    assert run(["bench", "--model", str(bad), "--batch-sizes", "1"]) == 2
    assert "torchslim bug" not in capsys.readouterr().err


def test_an_honest_file_still_loads(tslim):
    assert torchslim.load(tslim)(torch.randn(3, 1, 8, 8)).shape == (3, 10)
