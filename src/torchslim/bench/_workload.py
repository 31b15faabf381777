"""Text served as a service would send it, not padded to the model's maximum.

Fixed-shape latencies (batch x 128 tokens) say little about real sentences, which average a
dozen tokens here. For token data (``TokenizedText``: input ids and an attention mask) the
harness also embeds the held-out sentences twice: in batches of 32 cut to the longest sentence
of each batch, and one sentence at a time cut to its own length. Each pass is timed whole,
after a warm-up pass (a runtime that compiles per shape compiles there) and a pause before
each pass (spinning worker threads of the previous runtime must not steal the cores).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from pydantic import BaseModel, ConfigDict

PAUSE_S = 0.05


class Workload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sentences: int
    mean_tokens: float  # real tokens per sentence (attention mask), not the padded length
    batch_size: int
    batched_s: float  # all sentences in batches of ``batch_size``, each cut to its longest sentence
    one_by_one_s: float  # every sentence alone, cut to its own length


def _token_data(dataset) -> tuple[torch.Tensor, torch.Tensor] | None:
    ids, mask = getattr(dataset, "input_ids", None), getattr(dataset, "attention_mask", None)
    if isinstance(ids, torch.Tensor) and isinstance(mask, torch.Tensor) and ids.shape == mask.shape:
        return ids, mask
    return None


def _batches(ids: torch.Tensor, mask: torch.Tensor, batch_size: int, device) -> list[tuple[torch.Tensor, ...]]:
    out = []
    for start in range(0, len(ids), batch_size):
        chunk_ids, chunk_mask = ids[start:start + batch_size], mask[start:start + batch_size]
        length = max(int(chunk_mask.sum(dim=1).max()), 1)
        out.append((chunk_ids[:, :length].to(device), chunk_mask[:, :length].to(device)))
    return out


def _timed_pass(fn: Callable, batches: list[tuple[torch.Tensor, ...]], cuda: bool) -> float:
    time.sleep(PAUSE_S)
    started = time.perf_counter()
    with torch.no_grad():
        for inputs in batches:
            fn(*inputs)
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - started


def sentence_workload(fn: Callable, dataset, *, device: torch.device, batch_size: int = 32,
                      repeats: int = 3) -> Workload | None:
    """The held-out sentences embedded in batches and one by one (median of ``repeats``
    passes, seconds); None for data that is not tokenized text."""
    tokens = _token_data(dataset)
    if tokens is None or len(tokens[0]) == 0:
        return None
    ids, mask = tokens
    cuda = device.type == "cuda"
    batched, alone = _batches(ids, mask, batch_size, device), _batches(ids, mask, 1, device)
    results = {}
    for name, plan in (("batched", batched), ("alone", alone)):
        _timed_pass(fn, plan, cuda)  # warm-up: first calls and per-shape compiles
        results[name] = statistics.median(_timed_pass(fn, plan, cuda) for _ in range(repeats))
    return Workload(sentences=len(ids), mean_tokens=round(float(mask.sum(dim=1).float().mean()), 2),
                    batch_size=batch_size, batched_s=round(results["batched"], 4),
                    one_by_one_s=round(results["alone"], 4))
