"""Canonical Huffman coding of small-alphabet symbol streams, vectorized with numpy.

A stream is stored as: the code length of every symbol of the alphabet (one nibble each, so
codes are limited to 15 bits), the bitstream (MSB first), and the bit offset of every chunk
of ``chunk`` symbols after the first. The chunk offsets cost 4 bytes per chunk and let the
decoder walk all chunks at once: one numpy step decodes one symbol in every chunk, so
decoding ``n`` symbols takes ``chunk`` vectorized steps instead of ``n`` Python steps.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

MAX_CODE_LENGTH = 15  # lengths are stored as nibbles
MIN_CHUNK = 4096  # below this many symbols a stream is one chunk (no offsets stored)
MAX_CHUNKS = 1024


class HuffmanError(ValueError):
    """A stream that does not decode (the container turns this into ArtifactError)."""


@dataclass
class EncodedStream:
    lengths: bytes  # nibble-packed code length per symbol of the alphabet
    bits: bytes  # the packed bitstream
    offsets: bytes  # little-endian uint32 bit offset of chunks 1.. (empty for one chunk)
    count: int  # number of symbols
    chunk: int  # symbols per chunk

    @property
    def nbytes(self) -> int:
        return len(self.lengths) + len(self.bits) + len(self.offsets)


def chunk_size(count: int) -> int:
    return max(MIN_CHUNK, -(-count // MAX_CHUNKS))


def code_lengths(counts: np.ndarray) -> np.ndarray:
    """Huffman code lengths for symbol ``counts`` (0 for unused symbols), at most 15 bits.

    Over-long codes only occur with extremely skewed counts; halving the counts (keeping
    every used symbol >= 1) until the tree fits costs a fraction of a bit per symbol there.
    """
    counts = np.asarray(counts, dtype=np.int64).copy()
    while True:
        lengths = _lengths_unlimited(counts)
        if lengths.max(initial=0) <= MAX_CODE_LENGTH:
            return lengths
        counts = np.where(counts > 0, np.maximum(counts // 2, 1), 0)


def _lengths_unlimited(counts: np.ndarray) -> np.ndarray:
    used = np.flatnonzero(counts)
    lengths = np.zeros(len(counts), dtype=np.int64)
    if len(used) == 1:
        lengths[used[0]] = 1  # a one-symbol stream still needs one bit per symbol to count them
        return lengths
    # Heap of (weight, tie-break, symbols under this node); merging deepens every leaf by one.
    heap = [(int(counts[s]), i, [int(s)]) for i, s in enumerate(used)]
    heapq.heapify(heap)
    tie = len(heap)
    while len(heap) > 1:
        w1, _, s1 = heapq.heappop(heap)
        w2, _, s2 = heapq.heappop(heap)
        lengths[s1] += 1
        lengths[s2] += 1
        heapq.heappush(heap, (w1 + w2, tie, s1 + s2))
        tie += 1
    return lengths


def canonical_codes(lengths: np.ndarray) -> np.ndarray:
    """Canonical code values (symbols ordered by (length, symbol))."""
    codes = np.zeros(len(lengths), dtype=np.int64)
    code, prev_len = 0, 0
    for sym in sorted(np.flatnonzero(lengths), key=lambda s: (lengths[s], s)):
        code <<= int(lengths[sym]) - prev_len
        codes[sym] = code
        code += 1
        prev_len = int(lengths[sym])
    return codes


def _pack_nibbles(values: np.ndarray) -> bytes:
    v = np.asarray(values, dtype=np.uint8)
    if len(v) % 2:
        v = np.append(v, 0)
    return ((v[0::2] << 4) | v[1::2]).astype(np.uint8).tobytes()


def _unpack_nibbles(data: bytes, n: int) -> np.ndarray:
    b = np.frombuffer(data, dtype=np.uint8)
    return np.stack([b >> 4, b & 15], axis=1).reshape(-1)[:n].astype(np.int64)


def nibble_bytes(alphabet: int) -> int:
    return (alphabet + 1) // 2


def encode(symbols: np.ndarray, alphabet: int, *, fixed: bool = False) -> EncodedStream:
    """Huffman-code ``symbols`` (ints in ``[0, alphabet)``); ``fixed=True`` gives every symbol
    the same ceil(log2(alphabet))-bit code instead (a valid prefix code the same decoder
    reads), which is how the uncoded "fixed-width" stage sizes are written for comparison."""
    symbols = np.asarray(symbols, dtype=np.int64).reshape(-1)
    count = len(symbols)
    if fixed:
        lengths = np.full(alphabet, max(1, int(np.ceil(np.log2(alphabet)))), dtype=np.int64)
    elif count:
        lengths = code_lengths(np.bincount(symbols, minlength=alphabet))
    else:
        lengths = np.zeros(alphabet, np.int64)
    codes = canonical_codes(lengths)
    sym_len = lengths[symbols]
    sym_code = codes[symbols]
    ends = np.cumsum(sym_len)
    starts = ends - sym_len
    total = int(ends[-1]) if count else 0
    bitarray = np.zeros(total, dtype=np.uint8)
    for j in range(int(sym_len.max(initial=0))):  # at most 15 vectorized passes
        has = sym_len > j
        bitarray[starts[has] + j] = (sym_code[has] >> (sym_len[has] - 1 - j)) & 1
    chunk = chunk_size(count)
    offsets = starts[chunk::chunk].astype("<u4").tobytes()
    return EncodedStream(_pack_nibbles(lengths), np.packbits(bitarray).tobytes(), offsets, count, chunk)


def decode(lengths_data: bytes, bits: bytes, offsets: bytes, count: int, alphabet: int) -> np.ndarray:
    """Decode ``count`` symbols; raises HuffmanError on any inconsistency."""
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    if count > 8 * len(bits):  # every code is >= 1 bit: checked before the output is allocated
        raise HuffmanError(f"{count} symbols cannot fit in {len(bits)} bytes of codes")
    lengths = _unpack_nibbles(lengths_data, alphabet)
    if len(lengths) != alphabet or not lengths.any():
        raise HuffmanError("empty or short code-length table")
    if np.sum(2.0 ** -lengths[lengths > 0]) > 1.0:
        raise HuffmanError("code lengths do not form a prefix code")
    codes = canonical_codes(lengths)
    # Lookup table over every 15-bit window: the symbol whose code prefixes it, and its length.
    table_sym = np.full(1 << MAX_CODE_LENGTH, -1, dtype=np.int64)
    table_len = np.zeros(1 << MAX_CODE_LENGTH, dtype=np.int64)
    for sym in np.flatnonzero(lengths):
        shift = MAX_CODE_LENGTH - int(lengths[sym])
        lo = int(codes[sym]) << shift
        table_sym[lo:lo + (1 << shift)] = sym
        table_len[lo:lo + (1 << shift)] = lengths[sym]
    chunk = chunk_size(count)
    n_chunks = -(-count // chunk)
    pos = np.zeros(n_chunks, dtype=np.int64)
    if n_chunks > 1:
        if len(offsets) != 4 * (n_chunks - 1):
            raise HuffmanError("chunk offset table has the wrong length")
        pos[1:] = np.frombuffer(offsets, dtype="<u4").astype(np.int64)
    total_bits = 8 * len(bits)
    if pos.max() > total_bits:
        raise HuffmanError("chunk offset beyond the bitstream")
    data = np.frombuffer(bits + b"\0\0\0\0", dtype=np.uint8).astype(np.int64)
    out = np.empty((n_chunks, chunk), dtype=np.int64)
    last_used = count - (n_chunks - 1) * chunk  # the last chunk may be shorter
    last_end = 0
    for step in range(min(chunk, count)):
        byte, bit = pos >> 3, pos & 7
        window = (data[byte] << 16) | (data[byte + 1] << 8) | data[byte + 2]
        window = (window >> (24 - MAX_CODE_LENGTH - bit)) & ((1 << MAX_CODE_LENGTH) - 1)
        out[:, step] = table_sym[window]
        pos = np.minimum(pos + table_len[window], total_bits + 1)
        if step == last_used - 1:
            last_end = int(pos[-1])
    flat = out.reshape(-1)[:count]
    if (flat < 0).any():
        raise HuffmanError("bitstream holds a bit pattern that is no code")
    if last_end > total_bits or (n_chunks > 1 and not np.array_equal(pos[:-1], np.frombuffer(offsets, dtype="<u4"))):
        raise HuffmanError("bitstream length does not match its symbols")
    return flat
