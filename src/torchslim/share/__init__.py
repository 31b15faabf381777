"""Deep compression: weight sharing (``share``) and Huffman coding into a .tslim file.

    shared = share(model, ShareConfig(bits=5))          # <= 2^bits values per layer, zeros kept
    save_tslim(shared, "model.tslim", example_inputs=(x,))
    model = load_tslim("model.tslim")                    # bit-identical to ``shared``

Recipe steps: ``share: {bits: 5}`` then ``encode: huffman`` (or ``{method: huffman}``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from torchslim.core.registry import TECHNIQUES, Technique
from torchslim.errors import validate_options
from torchslim.share._format import TslimContents, read_tslim
from torchslim.share._share import (
    ShareConfig,
    distinct_values,
    share,
    shareable_tensors,
    validate_config,
)
from torchslim.share._tslim import (
    StageBits,
    bits_per_weight,
    load_tslim,
    save_tslim,
    stage_bits,
    tslim_info,
)

NO_SPEEDUP_NOTE = ("decoded to dense fp32 at load: smaller on disk, no speed-up "
                   "(inference runs the same dense kernels as the uncompressed model)")


class EncodeConfig(BaseModel):
    """Options of the ``encode`` step (recipe: ``encode: huffman``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    method: Literal["huffman"] = Field("huffman", description="entropy coder (Huffman only)")
    raw_precision: Literal["fp32", "fp16"] = Field(
        "fp32", description="storage of tensors left dense and unshared; fp16 is lossy")


def validate_step(options: dict | None) -> ShareConfig:
    return validate_config(options, "share step options")


def run_step(model, config: ShareConfig, ctx):
    from torchslim.core.step import StepOutput

    shared = share(model, config, data=ctx.data if config.finetune_epochs else None, device=ctx.device)
    counts = distinct_values(shared, config.include_bias)
    ctx.log(f"share: {len(counts)} tensors, at most {max(counts.values())} distinct nonzero values each")
    return StepOutput(model=shared, notes=[
        f"weights shared to {2 ** config.bits} values per layer; the model is still dense fp32 in "
        "memory: only a following `encode: huffman` step makes the file smaller"])


def validate_encode_step(options: str | dict | None) -> EncodeConfig:
    if isinstance(options, str):
        options = {"method": options}
    return validate_options(EncodeConfig, options, "encode step options", example="{method: huffman}")


def run_encode_step(model, config: EncodeConfig, ctx):
    from torchslim.core.step import StepOutput

    path = save_tslim(model, ctx.work_dir / "model.tslim", example_inputs=ctx.example_inputs,
                      task=ctx.data.task, raw_precision=config.raw_precision, input_names=ctx.input_names)
    info = tslim_info(path)
    ctx.log(f"encode: {path.name} {info['file_bytes']:,} B (structure {info['structure_bytes']:,} B, "
            f"weights {info['weight_bytes']:,} B, {info['parameter_bits_per_weight']:.2f} bits/weight)")
    # The next step gets the encoded model itself: the file decodes to bit-identical weights
    # (tested), and the module rebuilt from an ExportedProgram refuses .train()/.eval().
    return StepOutput(model=model, runtime="tslim", artifact=path, notes=[NO_SPEEDUP_NOTE])


__all__ = [
    "EncodeConfig",
    "ShareConfig",
    "StageBits",
    "TslimContents",
    "bits_per_weight",
    "distinct_values",
    "load_tslim",
    "read_tslim",
    "run_encode_step",
    "run_step",
    "save_tslim",
    "share",
    "shareable_tensors",
    "stage_bits",
    "tslim_info",
    "validate_encode_step",
    "validate_step",
]

TECHNIQUES.register("share", Technique("share", validate_step, run_step, "k-means weight sharing"))
TECHNIQUES.register("encode", Technique("encode", validate_encode_step, run_encode_step, "Huffman coding into a .tslim file"))
