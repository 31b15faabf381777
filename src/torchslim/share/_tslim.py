"""``save_tslim`` / ``load_tslim`` and the bits-per-weight accounting of each stage."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn as nn

from torchslim.core.export import dynamic_axes, export_program
from torchslim.core.files import atomic_write_bytes
from torchslim.core.manifest import Manifest, input_specs, write_manifest
from torchslim.core.padding import padding_extra
from torchslim.errors import ConfigError
from torchslim.share import _codec
from torchslim.share._format import encode_program, read_tslim, rebuild_program


def save_tslim(
    model: nn.Module,
    path: str | Path,
    *,
    example_inputs: tuple[torch.Tensor, ...],
    task: str = "classification",
    steps: list[str] | None = None,
    raw_precision: Literal["fp32", "fp16"] = "fp32",
    coding: Literal["huffman", "fixed"] = "huffman",
    input_names: list[str] | None = None,
) -> Path:
    """Write ``model`` as a .tslim file (plus its manifest); returns the path.

    Works for any model ``torch.export`` can capture. Each tensor takes its smallest exact
    encoding (see ``_codec``); ``raw_precision="fp16"`` additionally stores dense float32
    tensors as fp16, which is lossy and breaks bit-identity for those tensors.
    ``coding="fixed"`` writes fixed-width codes instead of Huffman codes (the same loader
    reads both): used to measure the stages before Huffman coding on disk.
    """
    if coding not in ("huffman", "fixed"):
        raise ConfigError(f"coding must be 'huffman' or 'fixed', got {coding!r}.")
    if raw_precision not in ("fp32", "fp16"):
        raise ConfigError(f"raw_precision must be 'fp32' or 'fp16', got {raw_precision!r}.")
    path = Path(path)
    if path.suffix != ".tslim":
        raise ConfigError(f"{str(path)!r}: a .tslim artifact's name must end in .tslim.")
    cpu_model = model
    if any(p.device.type != "cpu" for p in model.parameters()):
        import copy

        cpu_model = copy.deepcopy(model).cpu()
    example_cpu = tuple(t.detach().cpu() for t in example_inputs)
    program = export_program(cpu_model.eval(), example_cpu)
    blob = encode_program(program, raw_fp16=raw_precision == "fp16", fixed=coding == "fixed", meta={
        "task": task, "steps": steps or [],
        "inputs": [[[max(2, t.shape[0]), *t.shape[1:]], _codec.dtype_name(t.dtype)] for t in example_cpu]})
    atomic_write_bytes(path, blob)
    info = tslim_info(path)
    extra = {k: info[k] for k in ("structure_bytes", "weight_bytes", "header_bytes")}
    extra |= padding_extra(cpu_model, example_cpu, input_names)
    specs = input_specs(example_cpu, input_names, dynamic_axes(program))
    write_manifest(path, Manifest("tslim", "tslim", specs, task, steps or [], extra))
    return path


def load_tslim(path: str | Path, *, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the dense model from a .tslim file (validated; ArtifactError on any defect)."""
    path = Path(path)
    program = rebuild_program(read_tslim(path), path)
    module = program.module()
    return module.to(device) if torch.device(device).type != "cpu" else module


def tslim_info(path: str | Path) -> dict:
    """Where the bytes of a .tslim file go: structure vs weights vs header, per tensor."""
    path = Path(path)
    contents = read_tslim(path)
    total = path.stat().st_size
    params = [e for e in contents.header["tensors"] if e["kind"] == "parameter"]
    numel = sum(math.prod(e["shape"]) for e in params)
    return {
        "file_bytes": total,
        "structure_bytes": contents.structure_bytes,
        "weight_bytes": contents.weight_bytes,
        "header_bytes": total - contents.structure_bytes - contents.weight_bytes,
        "parameter_bits_per_weight": 8 * sum(e["length"] for e in params) / max(numel, 1),
        "tensors": [{k: e[k] for k in ("name", "shape", "encoding", "length")} for e in contents.header["tensors"]],
    }


# ---- bits per weight ---------------------------------------------------------------------


def bits_per_weight(model: nn.Module, *, coding: Literal["fixed", "huffman"] = "huffman") -> float:
    """Average bits per parameter value as the .tslim encoder stores them: each tensor in
    its smallest exact form (dense, codebook indices, or sparse gaps + values) with
    ``huffman`` codes, or with ``fixed``-width codes (the paper's pre-Huffman stages)."""
    total_bits, total = 0, 0
    for p in model.parameters():
        total += p.numel()
        total_bits += 8 * _codec.encode_tensor(p, fixed=coding == "fixed").nbytes
    return total_bits / max(total, 1)


@dataclass
class StageBits:
    stage: str
    bits_per_weight: float
    compression: float  # 32 / bits_per_weight for fp32 models

    def to_dict(self) -> dict:
        return asdict(self)


def stage_bits(stages: dict[str, nn.Module], huffman_stage: str = "huffman") -> list[StageBits]:
    """Bits per weight after each stage: every model in ``stages`` with fixed-width codes,
    then the last one again with Huffman codes (named ``huffman_stage``)."""
    rows = [(name, bits_per_weight(m, coding="fixed")) for name, m in stages.items()]
    rows.append((huffman_stage, bits_per_weight(list(stages.values())[-1], coding="huffman")))
    return [StageBits(name, round(b, 4), round(32 / b, 2) if b else float("inf")) for name, b in rows]
