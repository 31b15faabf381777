"""The .tslim container: a model's graph and its compressed weights in one file, no pickle.

Layout (little-endian)::

    b"TSLIM"  u8 format version  u32 header length  u32 CRC32(version + length + header)
    header    zlib-compressed JSON (with the format's preset dictionary, _dictionary.py): the section table (structure + one entry per tensor:
              name, shape, dtype, kind, encoding, offset, length, CRC32, decoder fields)
    payload   the sections back to back

The structure section is the model's ``torch.export`` program serialized by torch's own
JSON serde with the weights left out and node debug metadata (stack traces) stripped,
then zlib-compressed: about 1 KB for an MLP, 3-4 KB for the small CNNs/transformer. The
loader decodes every tensor, puts them back into the program and returns
``program.module()``, so the file rebuilds a runnable model on its own. Every byte is
covered by a CRC32: a truncated file, a flipped byte or a wrong version is refused.

A CRC proves nothing against a file made to hurt (its author computes the CRCs), so every
size in the header is checked before anything is allocated or decompressed for it: the
header and the structure decompress at most ``MAX_HEADER_BYTES`` / ``MAX_STRUCTURE_BYTES``,
and all tensors (plus the example inputs in ``meta``) together may not decode to more than
``max_decoded_bytes(file size)``. A 200 KB file cannot make the loader allocate gigabytes.
"""

from __future__ import annotations

import json
import math
import struct
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from torchslim.errors import ArtifactError, ExportError
from torchslim.share import _codec
from torchslim.share._dictionary import compress

MAGIC = b"TSLIM"
VERSION = 1
_PREAMBLE = struct.Struct("<5sBII")
MAX_HEADER_BYTES = 64 << 20  # the section table: ~200 bytes per tensor, so ~300k tensors
MAX_STRUCTURE_BYTES = 256 << 20  # the graph's JSON: a few KB for the zoo, tens of MB for an LLM
MIN_DECODED_BUDGET = 256 << 20  # decoded tensors allowed whatever the file's size
DECODED_PER_FILE_BYTE = 1024  # and beyond it: 1-bit codes of fp64 values expand 64x; zeros more
MAX_DIMS = 16


def max_decoded_bytes(file_size: int) -> int:
    """The most bytes of tensors a .tslim file of ``file_size`` bytes may decode to."""
    return max(MIN_DECODED_BUDGET, DECODED_PER_FILE_BYTE * file_size)


@dataclass
class TslimContents:
    """What a .tslim file holds, decoded."""

    header: dict
    structure: bytes  # the program JSON (decompressed)
    tensors: dict[str, torch.Tensor]

    @property
    def structure_bytes(self) -> int:
        return int(self.header["structure"]["length"])

    @property
    def weight_bytes(self) -> int:
        return sum(int(e["length"]) for e in self.header["tensors"])


def _strip_debug_metadata(program_json: bytes) -> bytes:
    graph = json.loads(program_json)
    for node in graph["graph_module"]["graph"]["nodes"]:
        node["metadata"] = {}  # stack traces and module paths: debugging aids, not semantics
    return json.dumps(graph, separators=(",", ":")).encode()


def _program_tensors(program) -> list[tuple[str, str, torch.Tensor]]:
    signature = program.graph_signature
    params = set(signature.parameters)
    out = [(name, "parameter" if name in params else "buffer", t) for name, t in program.state_dict.items()]
    for name, value in program.constants.items():
        if not isinstance(value, torch.Tensor):
            raise ExportError(f"The model holds a non-tensor constant {name!r} ({type(value).__name__}); "
                              ".tslim stores tensors only. Save it as .pt2 instead.")
        out.append((name, "constant", value))
    return out


def encode_program(program, *, raw_fp16: bool = False, fixed: bool = False, meta: dict | None = None) -> bytes:
    """The .tslim bytes for an ExportedProgram."""
    from torch._export.serde import serialize as serde

    if sys.byteorder != "little":
        raise ExportError(".tslim files are little-endian; this machine is not.")
    artifact = serde.serialize(program, serialize_state_dict=False, serialize_constants=False,
                               serialize_example_inputs=False)
    structure = compress(_strip_debug_metadata(artifact.exported_program))
    sections = [structure]
    offset = len(structure)
    entries = []
    for name, kind, tensor in _program_tensors(program):
        if tensor.is_quantized or tensor.layout != torch.strided:
            raise ExportError(f"Tensor {name!r} is quantized or not dense; .tslim stores plain dense tensors.")
        enc = _codec.encode_tensor(tensor, raw_fp16=raw_fp16, fixed=fixed)
        blob = b"".join(enc.parts)
        entries.append({
            "name": name, "kind": kind, "shape": list(tensor.shape), "dtype": _codec.dtype_name(tensor.dtype),
            "requires_grad": bool(tensor.requires_grad), "encoding": enc.encoding, "offset": offset,
            "length": len(blob), "parts": [len(p) for p in enc.parts], "crc32": zlib.crc32(blob), **enc.fields,
        })
        sections.append(blob)
        offset += len(blob)
    header = {
        "torch": torch.__version__,
        "structure": {"encoding": "torch-export-json+zlib-dict1", "offset": 0, "length": len(structure),
                      "crc32": zlib.crc32(structure)},
        "tensors": entries,
        "payload_length": offset,
        "meta": meta or {},
    }
    header_bytes = compress(json.dumps(header, separators=(",", ":")).encode())
    head = struct.pack("<BI", VERSION, len(header_bytes))
    preamble = _PREAMBLE.pack(MAGIC, VERSION, len(header_bytes), zlib.crc32(head + header_bytes))
    return preamble + header_bytes + b"".join(sections)


def _refuse(path: Path, why: str) -> ArtifactError:
    return ArtifactError(f"{str(path)!r} is not a valid .tslim file (damaged or hostile): {why}. Re-create it with "
                         "`torchslim share` (or torchslim.share.save_tslim); the file may have been cut "
                         "short or altered after it was written.")


def _header_and_payload(path: Path, data: bytes, version: int, header_len: int, header_crc: int) -> tuple[dict, bytes]:
    start = _PREAMBLE.size
    if len(data) < start + header_len:
        raise _refuse(path, "truncated inside the header")
    header_bytes = data[start:start + header_len]
    if zlib.crc32(struct.pack("<BI", version, header_len) + header_bytes) != header_crc:
        raise _refuse(path, "header checksum mismatch (CRC32)")
    try:
        header = json.loads(_bounded_decompress(header_bytes, MAX_HEADER_BYTES, "header"))
        payload_length = int(header["payload_length"])
    except _TooLarge as e:
        raise _refuse(path, str(e)) from None
    except (ValueError, KeyError, TypeError, zlib.error) as e:
        raise _refuse(path, f"header does not parse ({e})") from None
    payload = data[start + header_len:]
    if len(payload) != payload_length:
        what = "truncated" if len(payload) < payload_length else "trailing bytes after the payload"
        raise _refuse(path, f"{what} (payload is {len(payload)} bytes, header says {payload_length})")
    try:
        _check_sizes(header, payload_length, max_decoded_bytes(len(data)))
    except (ValueError, KeyError, TypeError) as e:
        raise _refuse(path, str(e)) from None
    return header, payload


class _TooLarge(ValueError):
    pass


def _bounded_decompress(blob: bytes, limit: int, what: str) -> bytes:
    """``decompress`` that stops at ``limit`` bytes: a zlib bomb is refused, never expanded."""
    from torchslim.share._dictionary import ZDICT

    d = zlib.decompressobj(zdict=ZDICT)
    out = d.decompress(blob, limit + 1)
    if len(out) > limit or d.unconsumed_tail:
        raise _TooLarge(f"the {what} decompresses to more than {limit >> 20} MiB")
    out += d.flush()
    if len(out) > limit:
        raise _TooLarge(f"the {what} decompresses to more than {limit >> 20} MiB")
    return out


def _numel(shape, what: str, min_dim: int = 0) -> int:
    if not isinstance(shape, list) or len(shape) > MAX_DIMS or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= min_dim for d in shape):
        raise ValueError(f"{what}: shape {str(shape)[:80]} is not a list of at most {MAX_DIMS} whole numbers >= {min_dim}")
    return math.prod(shape)


def _check_sizes(header: dict, payload_length: int, budget: int) -> None:
    """Every offset, length and shape of the header, before anything is allocated for it."""
    if not isinstance(header, dict) or not isinstance(header.get("tensors"), list):
        raise ValueError("the header has no tensor table")
    sections = [("structure", header["structure"])] + [(str(e.get("name"))[:80] if isinstance(e, dict) else "?", e)
                                                        for e in header["tensors"]]
    for label, entry in sections:
        if not isinstance(entry, dict):
            raise ValueError(f"section {label!r} is not a table entry")
        offset, length = entry["offset"], entry["length"]
        if not (isinstance(offset, int) and isinstance(length, int) and 0 <= offset and 0 <= length
                and offset + length <= payload_length):
            raise ValueError(f"section {label!r} lies outside the payload")
    if header["structure"]["length"] > MAX_STRUCTURE_BYTES:
        raise ValueError(f"the structure section is larger than {MAX_STRUCTURE_BYTES >> 20} MiB")
    total = 0
    for label, entry in sections[1:]:
        numel = _numel(entry["shape"], f"tensor {label!r}")
        total += numel * _codec.parse_dtype(entry["dtype"]).itemsize
        nnz = entry.get("nnz", 0)
        if not isinstance(nnz, int) or not 0 <= nnz <= numel:
            raise ValueError(f"tensor {label!r}: {str(nnz)[:20]} nonzeros for {numel} elements")
    meta = header.get("meta") or {}
    for item in (meta.get("inputs") or []) if isinstance(meta, dict) else []:
        if not (isinstance(item, list) and len(item) == 2):
            raise ValueError("meta.inputs is not a list of [shape, dtype]")
        total += _numel(item[0], "an example input", min_dim=1) * _codec.parse_dtype(item[1]).itemsize
    if total > budget:
        raise ValueError(f"its tensors would decode to {total / (1 << 20):.0f} MiB, more than a file of this size "
                         f"can hold ({budget >> 20} MiB at most)")


def read_tslim(path: str | Path) -> TslimContents:
    """Validate and decode a .tslim file; raises ArtifactError on any defect."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"Artifact {str(path)!r} does not exist.")
    data = path.read_bytes()
    if len(data) < _PREAMBLE.size:
        raise _refuse(path, f"truncated ({len(data)} bytes, shorter than the {_PREAMBLE.size}-byte preamble)")
    magic, version, header_len, header_crc = _PREAMBLE.unpack_from(data)
    if magic != MAGIC:
        raise _refuse(path, f"wrong magic {magic!r} (expected {MAGIC!r})")
    if version != VERSION:
        raise ArtifactError(f"{str(path)!r} is .tslim format version {version}; this torchslim reads "
                            f"version {VERSION}. Use the torchslim release that wrote it, or re-create the file.")
    header, payload = _header_and_payload(path, data, version, header_len, header_crc)

    def section(entry: dict, label: str) -> bytes:
        blob = payload[entry["offset"]:entry["offset"] + entry["length"]]
        if len(blob) != entry["length"] or zlib.crc32(blob) != entry["crc32"]:
            raise _refuse(path, f"section {label!r} checksum mismatch (CRC32)")
        return blob

    try:
        structure = _bounded_decompress(section(header["structure"], "structure"), MAX_STRUCTURE_BYTES, "structure")
        tensors = {}
        for entry in header["tensors"]:
            blob = section(entry, entry["name"])
            parts, cursor = [], 0
            for size in entry["parts"]:
                parts.append(blob[cursor:cursor + size])
                cursor += size
            if cursor != len(blob) or len(parts) != _codec.part_count(entry["encoding"], entry):
                raise ValueError(f"tensor {entry['name']!r}: part table does not match its section")
            dtype = _codec.parse_dtype(entry["dtype"])
            tensors[entry["name"]] = _codec.decode_tensor(entry["encoding"], parts, entry, dtype, entry["shape"])
    except ArtifactError:
        raise
    except (ValueError, KeyError, TypeError, IndexError, RuntimeError, zlib.error) as e:
        raise _refuse(path, f"content does not decode ({e})") from None
    return TslimContents(header, structure, tensors)


def rebuild_program(contents: TslimContents, path: Path):
    """The ExportedProgram with its weights put back."""
    from torch._export.serde import serialize as serde

    state_dict, constants = {}, {}
    for entry in contents.header["tensors"]:
        t = contents.tensors[entry["name"]]
        if entry["kind"] == "parameter":
            state_dict[entry["name"]] = nn.Parameter(t, requires_grad=entry.get("requires_grad", True))
        elif entry["kind"] == "buffer":
            state_dict[entry["name"]] = t
        else:
            constants[entry["name"]] = t
    # Example inputs (zeros of the recorded shapes) let ``program.module()`` compile its
    # input guards into the graph instead of checking constraints in Python on every call
    # (measured: 0.19 -> 0.15 ms per LeNet-300-100 call at batch 1).
    inputs = contents.header.get("meta", {}).get("inputs") or []
    example = (tuple(torch.zeros(shape, dtype=_codec.parse_dtype(dtype)) for shape, dtype in inputs), {}) if inputs else None
    try:
        program = serde.deserialize(serde.SerializedArtifact(contents.structure, state_dict, constants, example))
    except Exception as e:
        raise ArtifactError(
            f"{str(path)!r}: the model graph does not load in torch {torch.__version__} "
            f"(written by torch {contents.header.get('torch')}): {type(e).__name__}: {str(e).splitlines()[0][:200]}"
        ) from None
    _check_tensors_fit_graph(program, contents.tensors, path)
    return program


def _check_tensors_fit_graph(program, tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Each stored tensor has the shape and dtype the graph was traced with (a mismatch would
    only surface as a shape error inside the first forward call)."""
    signature = program.graph_signature
    targets = {**signature.inputs_to_parameters, **signature.inputs_to_buffers,
               **signature.inputs_to_lifted_tensor_constants}
    for node in program.graph.nodes:
        if node.op != "placeholder" or node.name not in targets:
            continue
        name, expected = targets[node.name], node.meta.get("val")
        stored = tensors.get(name)
        if stored is None:
            raise _refuse(path, f"the graph uses tensor {name!r}, which the file does not hold")
        if isinstance(expected, torch.Tensor) and (list(expected.shape) != list(stored.shape)
                                                   or expected.dtype != stored.dtype):
            raise _refuse(path, f"tensor {name!r} is {_codec.dtype_name(stored.dtype)}{list(stored.shape)} but the "
                                f"model graph expects {_codec.dtype_name(expected.dtype)}{list(expected.shape)}")
