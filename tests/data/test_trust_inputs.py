"""Inputs made to exhaust memory or to confuse: one enormous text line, a decompression-bomb
image, a seed beyond 64 bits. Each is bounded or refused (exit 2), never "a torchslim bug"."""

from __future__ import annotations

import struct
import tracemalloc
import zlib

import numpy as np
import pytest
import torch

from torchslim.cli import run
from torchslim.data import _imagefolder, _text, load_data
from torchslim.errors import DataError


class _RecordingTokenizer:
    """What a tokenizer is given (lengths only), and fixed-length ids back."""

    model_max_length = 16

    def __init__(self):
        self.lengths: list[int] = []

    def __call__(self, sentences, *, max_length, **_kw):
        self.lengths += [len(s) for s in sentences]
        ids = torch.ones(len(sentences), max_length, dtype=torch.int64)
        return {"input_ids": ids, "attention_mask": ids}


def test_an_enormous_line_is_cut_before_the_tokenizer_sees_it(tmp_path, monkeypatch):
    monkeypatch.setattr(_text, "MAX_LINE_CHARS", 1000)  # the same code path as 64 Ki chars vs 200 MB
    path = tmp_path / "s.txt"
    with open(path, "w", encoding="utf-8") as f:
        f.write("a short one\n" + "word " * 2_000_000 + "\nanother\nand a third\n")  # a 10 MB line
    tokenizer = _RecordingTokenizer()
    tracemalloc.start()
    bundle = _text.load_text(f"text:{path}", path, tokenizer=tokenizer)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(bundle.train) + len(bundle.val) + len(bundle.test) == 4
    assert max(tokenizer.lengths) <= 1000 and sorted(tokenizer.lengths)[:3] == [7, 11, 11]
    assert peak < 2 << 20  # the 10 MB line was never held whole


def test_lines_of_every_ending_still_read(tmp_path):
    path = tmp_path / "s.txt"
    path.write_bytes(b"0\tone\r\n1\ttwo\n\n0\tthree\r\n1\tfour")
    assert _text.read_sentences("text:x", path) == (["one", "two", "three", "four"], [0, 1, 0, 1])


def _png_header(width: int, height: int) -> bytes:
    """A valid PNG claiming ``width`` x ``height`` grey pixels (a few bytes: Pillow reads the header)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("size", [(20000, 20000), (5000, 5000)])  # past Pillow's bomb check; under it but too big
def test_an_oversized_image_is_refused_before_decoding(tmp_path, capsys, size):
    from PIL import Image

    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        for i in range(2):
            Image.fromarray(np.full((8, 8), 40 * i, dtype=np.uint8)).save(tmp_path / c / f"{i}.png")
    (tmp_path / "cat" / "0.png").write_bytes(_png_header(*size))  # the first image sets every sample's size
    with pytest.raises(DataError, match=r"0.png.*(too large to decode safely|\d+x\d+ pixels)"):
        load_data(f"imagefolder:{tmp_path}")
    assert run(["bench", "--model", "digits-mlp", "--data", f"imagefolder:{tmp_path}", "--batch-sizes", "1"]) == 2
    err = capsys.readouterr().err
    assert "0.png" in err and "torchslim bug" not in err
    assert _imagefolder.MAX_IMAGE_PIXELS < size[0] * size[1]


@pytest.mark.parametrize("command", ["optimize --out {o}", "train --model digits-mlp --out {o}",
                                     "quantize --model digits-mlp --out {o}", "bench --model digits-mlp"])
@pytest.mark.parametrize("seed", ["9223372036854775808", "18446744073709551616", "-1"])
def test_a_seed_beyond_64_bits_is_a_usage_error(tmp_path, capsys, command, seed):
    assert run([*command.format(o=tmp_path / "o").split(), "--seed", seed]) == 2
    assert "--seed" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_the_python_api_checks_the_seed_too():
    from torchslim.errors import ConfigError
    from torchslim.pipeline import RunOptions, optimize

    with pytest.raises(ConfigError, match="--seed 18446744073709551616: must be a whole number from 0 to 2\\*\\*63-1"):
        RunOptions(seed=2**64)
    with pytest.raises(ConfigError, match="RunOptions.seed"):
        optimize("digits-mlp", run={"seed": -1})


HOSTILE = "evil\x1b]0;pwned\x07\x1b[2J\u202ename"


def _assert_shown_not_run(text: str) -> None:
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert "\\x1b]0;pwned\\x07\\x1b[2J\\u202ename" in text  # the name is still readable


def test_escape_sequences_in_a_file_name_are_shown_not_run_in_the_table():
    import io

    from rich.console import Console

    from tests.report.test_report_html import sample_report
    from torchslim.report import render_table

    report = sample_report()
    report.data = f"npz:/data/{HOSTILE}.npz"
    report.candidates[-1].status, report.candidates[-1].metrics = "failed", None
    report.candidates[-1].error = f"DataError: cannot read {HOSTILE}"
    buffer = io.StringIO()
    render_table(report, Console(file=buffer, width=400))  # not a terminal: rich adds no escapes of its own
    _assert_shown_not_run(buffer.getvalue())


def test_escape_sequences_in_messages_and_log_lines_are_shown_not_run(tmp_path, capsys, caplog):
    from torchslim.core.log import say

    assert run(["bench", "--model", f"{tmp_path / HOSTILE}.py:f", "--batch-sizes", "1"]) == 2
    _assert_shown_not_run(capsys.readouterr().err)
    with caplog.at_level("INFO", logger="torchslim"):
        say(f"reading {HOSTILE}")
    _assert_shown_not_run(capsys.readouterr().err)
    _assert_shown_not_run(caplog.records[-1].getMessage())
