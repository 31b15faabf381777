"""Lossless encodings of one tensor for the .tslim container.

Every tensor gets the smallest of the encodings that apply (all exact, bit for bit):

    raw       the tensor's bytes (or fp16 bytes when the caller asks for lossy fp16 storage)
    codebook  few distinct values (<= 256): a codebook + Huffman-coded indices
    sparse    mostly zeros: Huffman-coded gaps between nonzeros, then the nonzero values,
              raw or as codebook + Huffman indices

Values are compared by bit pattern, not by ``==``, so NaN payloads survive; the one
canonicalization is -0.0 -> +0.0 in float tensors (pruning by ``weight * mask`` leaves
-0.0 behind, and a zero of either sign must be "zero" for sparse coding to work). A
codebook whose fp32 values are all exactly representable in fp16 is stored as fp16 (the
sharing step rounds centroids to fp16 for this reason): two bytes saved per centroid, no
value changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from torchslim.share import _huffman as huffman

MAX_CODEBOOK = 256
GAP_ALPHABETS = (2, 4, 8, 16, 32, 64, 128, 256)  # gap escape values tried; the smallest stream wins
_INT_VIEW = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


@dataclass
class Encoded:
    encoding: str  # raw | codebook | sparse
    parts: list[bytes]
    fields: dict = field(default_factory=dict)  # what the decoder needs besides the bytes

    @property
    def nbytes(self) -> int:
        return sum(len(p) for p in self.parts)


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def parse_dtype(name: str) -> torch.dtype:
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown dtype {name!r}")
    return dtype


def canonical(t: torch.Tensor) -> torch.Tensor:
    """``t`` with -0.0 replaced by +0.0 (float tensors); everything else unchanged."""
    if t.is_floating_point() and bool((t == 0).any()):
        return torch.where(t == 0, torch.zeros((), dtype=t.dtype), t)
    return t


def _bytes_of(t: torch.Tensor) -> bytes:
    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def _from_bytes(data: bytes, dtype: torch.dtype, count: int) -> torch.Tensor:
    width = torch.empty(0, dtype=dtype).element_size()
    if len(data) != width * count:
        raise ValueError(f"expected {width * count} bytes of {dtype_name(dtype)}, found {len(data)}")
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).view(dtype)[:count].clone() if count else torch.empty(0, dtype=dtype)


def _bit_view(flat: torch.Tensor) -> torch.Tensor:
    return flat.view(_INT_VIEW[flat.element_size()])


def _codebook_bytes(values: torch.Tensor) -> tuple[bytes, str]:
    """The codebook's bytes and stored dtype: fp16 when that is exact for every fp32 value."""
    if values.dtype == torch.float32:
        as_half = values.to(torch.float16)
        if torch.equal(_bit_view(as_half.float()), _bit_view(values)):
            return _bytes_of(as_half), "float16"
    return _bytes_of(values), dtype_name(values.dtype)


def _stream_parts(symbols: np.ndarray, alphabet: int, fixed: bool) -> tuple[list[bytes], int]:
    s = huffman.encode(symbols, alphabet, fixed=fixed)
    return [s.lengths, s.bits, s.offsets], s.count


def _gap_symbols(positions: np.ndarray, escape: int) -> np.ndarray:
    gaps = np.diff(positions, prepend=-1) - 1
    quotient, remainder = gaps // escape, gaps % escape
    run = quotient + 1
    out = np.full(int(run.sum()), escape, dtype=np.int64)
    out[np.cumsum(run) - 1] = remainder
    return out


def _encode_values(values: torch.Tensor, distinct: torch.Tensor | None, index: torch.Tensor | None,
                   fixed: bool) -> tuple[list[bytes], dict]:
    if distinct is None:
        return [_bytes_of(values)], {"values": "raw"}
    book, book_dtype = _codebook_bytes(distinct)
    parts, count = _stream_parts(index.numpy(), len(distinct), fixed)
    return [book, *parts], {"values": "codebook", "k": len(distinct), "codebook_dtype": book_dtype}


def encode_tensor(t: torch.Tensor, *, raw_fp16: bool = False, fixed: bool = False) -> Encoded:
    """The smallest exact encoding of ``t`` (``raw_fp16`` stores dense float32 as fp16: lossy;
    ``fixed`` writes fixed-width codes instead of Huffman codes, for stage comparisons)."""
    flat = canonical(t.detach().cpu().contiguous().reshape(-1))
    candidates = [Encoded("raw", [_bytes_of(flat)])]
    if raw_fp16 and flat.dtype == torch.float32:
        candidates = [Encoded("raw", [_bytes_of(flat.half())], {"stored_dtype": "float16"})]
    if flat.numel() == 0 or flat.element_size() not in _INT_VIEW or flat.dtype == torch.bool:
        return candidates[0]
    bits = _bit_view(flat)
    distinct, index = torch.unique(bits, return_inverse=True)  # sorted bit patterns
    if len(distinct) <= MAX_CODEBOOK:
        values, fields = _encode_values(flat, distinct.view(flat.dtype), index, fixed)
        candidates.append(Encoded("codebook", values, fields))
    nonzero = bits != 0
    nnz = int(nonzero.sum())
    if nnz < flat.numel():
        positions = torch.nonzero(nonzero).reshape(-1).numpy()
        gap_streams = []
        for escape in GAP_ALPHABETS:
            parts, count = _stream_parts(_gap_symbols(positions, escape), escape + 1, fixed)
            gap_streams.append((sum(len(p) for p in parts), escape, parts, count))
        _, escape, gap_parts, gap_count = min(gap_streams, key=lambda g: g[0])
        nz_bits = bits[nonzero]
        nz_distinct, nz_index = torch.unique(nz_bits, return_inverse=True)
        options = [(None, None)] + ([(nz_distinct.view(flat.dtype), nz_index)] if len(nz_distinct) <= MAX_CODEBOOK else [])
        for book, idx in options:
            values, fields = _encode_values(nz_bits.view(flat.dtype), book, idx, fixed)
            fields.update(nnz=nnz, gap_escape=escape, gap_count=gap_count)
            candidates.append(Encoded("sparse", [*gap_parts, *values], fields))
    return min(candidates, key=lambda c: c.nbytes)


def _decode_values(parts: list[bytes], fields: dict, dtype: torch.dtype, count: int) -> torch.Tensor:
    if fields["values"] == "raw":
        return _from_bytes(parts[0], dtype, count)
    k = int(fields["k"])
    book = _from_bytes(parts[0], parse_dtype(fields["codebook_dtype"]), k).to(dtype)
    index = huffman.decode(parts[1], parts[2], parts[3], count, k)
    if index.max(initial=0) >= k:
        raise ValueError("codebook index out of range")
    return book[torch.from_numpy(index)]


def decode_tensor(encoding: str, parts: list[bytes], fields: dict, dtype: torch.dtype, shape: list[int]) -> torch.Tensor:
    numel = int(np.prod(shape)) if shape else 1
    if encoding == "raw":
        stored = parse_dtype(fields.get("stored_dtype", dtype_name(dtype)))
        return _from_bytes(parts[0], stored, numel).to(dtype).reshape(shape)
    if encoding == "codebook":
        return _decode_values(parts, fields, dtype, numel).reshape(shape)
    if encoding == "sparse":
        escape, nnz = int(fields["gap_escape"]), int(fields["nnz"])
        symbols = huffman.decode(parts[0], parts[1], parts[2], int(fields["gap_count"]), escape + 1)
        advance = np.where(symbols == escape, escape, symbols + 1)
        positions = (np.cumsum(advance) - 1)[symbols != escape]
        if len(positions) != nnz or (nnz and positions[-1] >= numel):
            raise ValueError("sparse positions do not match the tensor's shape")
        out = torch.zeros(numel, dtype=dtype)
        out[torch.from_numpy(positions)] = _decode_values(parts[3:], fields, dtype, nnz)
        return out.reshape(shape)
    raise ValueError(f"unknown encoding {encoding!r}")


def part_count(encoding: str, fields: dict) -> int:
    values = 1 if fields.get("values", "raw") == "raw" else 4
    return {"raw": 1, "codebook": values, "sparse": 3 + values}[encoding]
