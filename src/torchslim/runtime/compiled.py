"""The ``compile`` runtime: an exported program run through ``torch.compile`` (inductor).

Inference graphs are compiled with ``torch._inductor.config.freezing=True``: weights become
constants, so inductor can fold them and pre-pack them for oneDNN. For PT2E int8 graphs this
is what turns quantize/dequantize pairs into int8 kernels; measured without it, static int8 is
no faster than fp32. Freezing applies only under ``torch.no_grad``, which this runtime enters.

Shapes are compiled static, one graph per batch size (``dynamic=False``): inductor's int8 conv
lowering fails with a symbolic batch (a stride assertion in torch 2.13), and static shapes are
the fastest code anyway. Each new batch size costs one compile (seconds; cached on disk in
``TORCHINDUCTOR_CACHE_DIR``), so the recompile limit is raised while compiling.

Token models would compile once per sequence length too; instead a token input is padded up to
the next of the manifest's length buckets (16, 32, 64, ... up to the model's maximum) with
token 0 and attention mask 0, so a service compiles at most one graph per bucket and batch
size. Padding is only done when one of the inputs is an attention mask (its name contains
"mask"): masked positions are ignored by attention and by masked pooling, so the result is
that of the unpadded input (tests/hf/test_varlen.py checks it); without a mask every length is
compiled as it comes. Outputs that have the sequence axis (recorded in the manifest as
``sequence_outputs``) are sliced back to the input's length. ``precompile()`` (or
``torchslim.load(..., precompile=True)``) compiles every bucket up front, so no request pays
for a compile.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.utils._pytree as pytree

from torchslim.errors import ArtifactError
from torchslim.runtime._check import check_format

_MAX_SHAPES = 64  # distinct input-shape sets compiled before falling back to eager


class CompiledModel(torch.nn.Module):
    """A compiled exported program behind the original model's call signature."""

    shape_specialized = True  # one graph per input shape: torchslim.core.padding does not split batches

    def __init__(self, module: torch.nn.Module, manifest: Any = None, path: Path | None = None) -> None:
        super().__init__()
        self.module = module  # kept as a child so parameters can be counted
        self._compiled = torch.compile(module, dynamic=False)
        self._seen: set[tuple] = set()
        self.training = False  # an exported program has its mode baked in
        self._manifest, self._path = manifest, path
        specs = manifest.inputs if manifest is not None else []
        self.padded_inputs = [spec.buckets is not None for spec in specs]
        has_mask = any("mask" in spec.name.lower() for spec, padded in zip(specs, self.padded_inputs, strict=True) if padded)
        self.buckets: list[int] = next((spec.buckets for spec in specs if spec.buckets), []) if has_mask else []
        self._sequence_outputs = list((manifest.extra if manifest is not None else {}).get("sequence_outputs") or [])

    def train(self, mode: bool = True):
        # .eval()/.train() must not reach the exported program, which refuses them.
        if mode:
            raise ArtifactError("A compiled artifact runs inference only; it cannot be put in training mode.")
        return self

    def forward(self, *args):
        if self._manifest is not None:
            self._manifest.check_inputs(args, self._path or "this artifact")
        length = self._sequence_length(args)
        bucket = next((b for b in self.buckets if b >= length), None) if length is not None else None
        if bucket is None or bucket == length:
            return self._run(args)
        padded = tuple(torch.nn.functional.pad(a, (0, bucket - length), value=0) if pad else a
                       for a, pad in zip(args, self.padded_inputs, strict=True))
        leaves, spec = pytree.tree_flatten(self._run(padded))
        leaves = [leaf[:, :length] if i < len(self._sequence_outputs) and self._sequence_outputs[i] else leaf
                  for i, leaf in enumerate(leaves)]
        return pytree.tree_unflatten(leaves, spec)

    def _sequence_length(self, args) -> int | None:
        lengths = {a.shape[1] for a, pad in zip(args, self.padded_inputs, strict=False) if pad and self.buckets}
        return lengths.pop() if len(lengths) == 1 else None

    def precompile(self, batch_sizes: tuple[int, ...] = (1,)) -> dict[tuple[int, int], float]:
        """Compile every length bucket (at each batch size) now; returns seconds per (batch, bucket)."""
        if self._manifest is None or not self.buckets:
            return {}
        seconds = {}
        for batch in batch_sizes:
            for bucket in self.buckets:
                inputs = tuple(spec.example(batch) if not pad else torch.ones(batch, bucket, dtype=getattr(torch, spec.dtype))
                               for spec, pad in zip(self._manifest.inputs, self.padded_inputs, strict=True))
                start = time.perf_counter()
                self._run(inputs)
                seconds[(batch, bucket)] = time.perf_counter() - start
        return seconds

    def _run(self, args):
        if _dispatch_mode_active():
            # A counting or tracing mode (the FLOP counter) sees the eager program. Compiling
            # under it would trace a graph guarded on the mode, and every later call would
            # recompile without freezing: measured, PT2E int8 MiniLM then ran 46.7 ms instead
            # of 5.6 ms at batch 1 (int8 is fast only when frozen).
            return self.module(*args)
        key = tuple((tuple(a.shape), a.dtype, a.device) if isinstance(a, torch.Tensor) else type(a) for a in args)
        with torch.no_grad():
            if key in self._seen:
                return self._compiled(*args)
            # A new shape compiles now: freezing and the recompile limit only matter here.
            with torch._inductor.config.patch(freezing=True), torch._dynamo.config.patch(
                recompile_limit=_MAX_SHAPES
            ), warnings.catch_warnings():
                # inductor's int8 lowering warns about its own tensor copies; nothing to act on.
                warnings.filterwarnings("ignore", message=".*sourceTensor.detach.*")
                # measurement tools (FLOP counting) may leave global module hooks registered;
                # compiled inference does not rely on them.
                warnings.filterwarnings("ignore", message=".*global hooks on modules.*")
                out = self._compiled(*args)
            self._seen.add(key)
            return out


def _dispatch_mode_active() -> bool:
    length = getattr(torch._C, "_len_torch_dispatch_stack", None)
    return bool(length and length() > 0)


class CompileRuntime:
    """Runs a ``.pt2`` ExportedProgram through ``torch.compile`` with inductor freezing."""

    name = "compile"

    def load(self, path: Path, manifest, *, device="cpu"):
        from torchslim.runtime.eager import EagerRuntime

        check_format(self.name, manifest, path, "exported", "exported .pt2 programs")
        return CompiledModel(EagerRuntime().load_module(path, manifest, device=device), manifest, path)
