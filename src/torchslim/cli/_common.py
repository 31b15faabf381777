"""Option parsing shared by several commands."""

from __future__ import annotations

from typing import Annotated

import typer

from torchslim.errors import ConfigError

MAX_SEED = 2**63 - 1  # torch's generators take a signed 64-bit seed; beyond it they overflow
# --seed out of range is a usage error (exit 2) before any work, in every command.
SeedOption = Annotated[int, typer.Option(min=0, max=MAX_SEED, help="random seed, 0 to 2**63-1")]
# The options most commands share, declared once as annotated types (`model: ModelSpec = "digits-cnn"`;
# each command keeps its own default value).
ModelSpec = Annotated[str, typer.Option(help="MODEL spec: zoo name, file.py:factory, module:factory or hf:DIR")]
DataSpec = Annotated[str, typer.Option(help="DATA spec: digits, npz:FILE, imagefolder:DIR, text:FILE or module:function")]
Weights = Annotated[str | None, typer.Option(help="state_dict for a factory model (.pt or .safetensors)")]
Device = Annotated[str, typer.Option(help="auto, cpu or cuda")]
BatchSizes = Annotated[str, typer.Option(help="comma-separated batch sizes to time")]


def parse_batch_sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"--batch-sizes {text!r}: give positive whole numbers separated by commas, e.g. 1,32.") from None
    if not sizes or any(b < 1 or b > 65536 for b in sizes):
        raise ConfigError(f"--batch-sizes {text!r}: every batch size must be between 1 and 65536, e.g. 1,32.")
    return sorted(set(sizes))
