"""Field checks for a manifest read from disk, before anything trusts it.

A hand-edited manifest (``"format_version": "2"``, an input shape of ``[-1, "x"]``) must be
named as such, not surface later as a comparison error or a shape guard deep in a runtime.
Raises ``ValueError`` with the field's name; ``read_manifest`` adds the file.
"""

from __future__ import annotations

from typing import Any

import torch

_KNOWN = {"format", "runtime", "inputs", "task", "steps", "extra", "format_version", "sha256"}


def check_manifest_fields(raw: Any) -> None:
    if not isinstance(raw, dict):
        raise ValueError(f"expected a JSON object, got {type(raw).__name__}")
    unknown = sorted(set(raw) - _KNOWN)
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)}")
    for name in ("format", "runtime"):
        if not isinstance(raw.get(name), str):
            raise ValueError(f"field {name!r} must be a string, got {raw.get(name)!r}")
    version = raw.get("format_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"field 'format_version' must be a whole number >= 1, got {version!r}")
    digests = raw.get("sha256")
    if digests is not None and not (
        isinstance(digests, dict)
        and all(isinstance(k, str) and isinstance(v, str) and len(v) == 64 for k, v in digests.items())
    ):
        raise ValueError("field 'sha256' must map file names to 64-digit hex digests")
    inputs = raw.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise ValueError("field 'inputs' must be a non-empty list of {shape, dtype, name}")
    for i, spec in enumerate(inputs):
        if not isinstance(spec, dict) or set(spec) - {"shape", "dtype", "name", "dynamic", "buckets"}:
            raise ValueError(f"inputs[{i}] must be an object with shape, dtype and name (and optionally "
                             "dynamic and buckets)")
        _check_dynamic(i, spec.get("dynamic"), spec.get("buckets"))
        shape = spec.get("shape")
        if not isinstance(shape, list) or not shape or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape
        ):
            raise ValueError(f"inputs[{i}].shape must be a list of whole numbers >= 1 (batch first), got {shape!r}")
        dtype = spec.get("dtype", "float32")
        if not isinstance(dtype, str) or not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise ValueError(f"inputs[{i}].dtype {dtype!r} is not a torch dtype (e.g. float32, int64)")


def _whole(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 1


def _check_dynamic(i: int, dynamic: Any, buckets: Any) -> None:
    """``dynamic``: {"axis": [min, max]}; ``buckets``: increasing lengths (both optional)."""
    if dynamic is not None and not (
        isinstance(dynamic, dict)
        and all(isinstance(k, str) and k.isdigit() and isinstance(v, list) and len(v) == 2
                and all(_whole(b) for b in v) and v[0] <= v[1] for k, v in dynamic.items())
    ):
        raise ValueError(f"inputs[{i}].dynamic must map axis numbers to [min, max] sizes, got {dynamic!r}")
    if buckets is not None and not (
        isinstance(buckets, list) and buckets and all(_whole(b) for b in buckets) and buckets == sorted(set(buckets))
    ):
        raise ValueError(f"inputs[{i}].buckets must be increasing whole numbers, got {buckets!r}")
