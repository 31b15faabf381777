"""Option parsing shared by several commands."""

from __future__ import annotations

from torchslim.errors import ConfigError


def parse_batch_sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"--batch-sizes {text!r}: give positive whole numbers separated by commas, e.g. 1,32.") from None
    if not sizes or any(b < 1 or b > 65536 for b in sizes):
        raise ConfigError(f"--batch-sizes {text!r}: every batch size must be between 1 and 65536, e.g. 1,32.")
    return sorted(set(sizes))
