"""Accuracy-aware fallback: keep the layers that cost the most accuracy in float, one at a time.

1. Quantize everything; measure the metric on the validation split (accuracy, or fidelity to
   the float model's outputs for embedding data). Within ``target_drop`` points: done.
2. Rank the quantizable layers by sensitivity: the drop when only that layer is round-tripped
   through int8 (weights per output channel, input per tensor, as the int8 kernels do) in the
   float model. One eager pass of the validation split per layer: cheap next to a real
   quantization, and only an ordering — every decision below is a real, measured quantization.
3. Walk the ranking: requantize with the next layer also kept in float and measure. A layer
   that does not raise the metric goes back to int8 (it costs speed and bought nothing). Stop
   when within ``target_drop`` or after ``max_layers`` tries.

``fallback_search`` is the loop alone, over any ``score(kept_in_float) -> (metric, model)``
callable, so it is tested with a fake metric; ``quantize_static`` gives it the real one.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
import torch.nn as nn
from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator

from torchslim.core.fake_int8 import fake_int8_
from torchslim.data import DataBundle, scorer


class FallbackStep(BaseModel):
    model_config = ConfigDict(extra="forbid")
    layer: str
    metric_before: float  # in [0, 1], before this layer was tried in float
    metric_after: float  # with it in float
    kept: bool  # False: it did not help and went back to int8


class FallbackResult(BaseModel):
    """What accuracy-aware fallback did: the one record from the quantizer (PT2E, ORT, NNCF)
    through the artifact's manifest and the recipe step to the report's ``fallback`` field."""

    model_config = ConfigDict(extra="forbid")
    metric: Literal["accuracy", "fidelity"]
    reference: float  # the float model's metric on the validation split
    quantized: float  # every layer in int8
    final: float
    target_drop: float  # points
    kept_in_float: list[str] = Field(default_factory=list)
    steps: list[FallbackStep] = Field(default_factory=list)
    ranking: list[tuple[str, float]] = Field(default_factory=list)  # (layer, sensitivity drop in points), worst first

    @model_validator(mode="before")
    @classmethod
    def _derived_is_not_input(cls, data: Any) -> Any:
        # within_target is written out (reports and manifests carry it) but always recomputed
        if isinstance(data, dict) and "within_target" in data:
            data = {k: v for k, v in data.items() if k != "within_target"}
        return data

    @computed_field  # type: ignore[prop-decorator]
    @property
    def within_target(self) -> bool:
        return (self.reference - self.final) * 100 <= self.target_drop + 1e-9

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")

    def notes(self) -> list[str]:
        """The report's account: what was kept in float and the metric before/after each try."""
        drop = (self.reference - self.quantized) * 100
        head = (f"fallback: float {self.metric} {self.reference:.4f} on the validation split; all int8 "
                f"{self.quantized:.4f} ({drop:.2f} points, target {self.target_drop:g})")
        if not self.steps:
            return [head + ": within target, every layer stays int8."]
        tries = "; ".join(f"{s.layer}: {s.metric_before:.4f} -> {s.metric_after:.4f}"
                          f"{'' if s.kept else ' (no gain, back to int8)'}" for s in self.steps)
        kept = ", ".join(self.kept_in_float) or "none"
        end = "within target" if self.within_target else "target not reached (limit hit)"
        return [f"{head}; tried in float: {tries}. Kept in float: {kept}; final {self.metric} "
                f"{self.final:.4f}, {end}."]


def fallback_search(
    ranked: Sequence[str] | Callable[[], Sequence[str]],
    score: Callable[[tuple[str, ...]], tuple[float, Any]],
    *,
    reference: float,
    target_drop: float,
    max_layers: int,
    metric: str = "accuracy",
) -> tuple[FallbackResult, Any]:
    """Greedy fallback over ``ranked`` (worst first). ``score(kept_in_float)`` quantizes with
    those layers left in float and returns (metric in [0, 1], the model). Returns the record
    and the model of the best configuration found (the last kept one). ``ranked`` may be a
    callable: the ranking (a pass per layer) is then made only when all-int8 misses the target."""
    current, best = score(())
    result = FallbackResult(metric=metric, reference=reference, quantized=current, final=current,
                            target_drop=target_drop)
    kept: list[str] = []
    if (reference - current) * 100 <= target_drop + 1e-9:
        return result, best
    for layer in list(ranked() if callable(ranked) else ranked)[:max_layers]:
        if (reference - current) * 100 <= target_drop + 1e-9:
            break
        trial, model = score((*kept, layer))
        helped = trial > current
        result.steps.append(FallbackStep(layer=layer, metric_before=current, metric_after=trial, kept=helped))
        if helped:
            kept.append(layer)
            current, best = trial, model
    result.kept_in_float, result.final = kept, current
    return result, best


# --- the real metric and ranking -----------------------------------------------------------------


def measured_fallback(original: nn.Module, ranked_on: nn.Module, layers: Sequence[str], data: DataBundle,
                      quantize_with: Callable[[tuple[str, ...]], tuple[Any, Any]], *, device: torch.device,
                      target_drop: float, max_layers: int,
                      log: Callable[[str], None] = lambda _m: None) -> tuple[FallbackResult, Any]:
    """``fallback_search`` with the real metric, shared by every int8 path (PT2E, ORT, NNCF).
    ``quantize_with(kept_in_float)`` quantizes with those layers left in float and returns
    (something callable on the validation inputs, what to return if this try is the best);
    ``layers`` are ranked on ``ranked_on`` (the model the paths quantize) only when all-int8
    misses the target. The metric is ``metric_fn``'s against ``original``."""
    score = metric_fn(original, data, device)
    reference = score(original)
    ranking: list[tuple[str, float]] = []

    def ranked() -> list[str]:  # a validation pass per layer
        log(f"fallback: ranking {len(layers)} layers by int8 sensitivity on the validation split")
        ranking.extend(rank_layers(ranked_on, list(layers), score, reference))
        return [name for name, _ in ranking]

    def measured(kept: tuple[str, ...]) -> tuple[float, Any]:
        runnable, payload = quantize_with(kept)
        value = score(runnable)
        log(f"fallback: {len(kept)} layer(s) in float ({', '.join(kept) or 'none'}): {data.metric} {value:.4f}")
        return value, payload

    result, best = fallback_search(ranked, measured, reference=reference, target_drop=target_drop,
                                   max_layers=max_layers, metric=data.metric)
    result.ranking = ranking
    return result, best


def metric_fn(reference_model: nn.Module, data: DataBundle, device: torch.device) -> Callable[[Any], float]:
    """Accuracy on the validation split; for embedding data, fidelity to ``reference_model``."""
    return scorer(data.task, data.val, reference_model, device=device)


def rank_layers(model: nn.Module, layers: Sequence[str], score: Callable[[Any], float],
                baseline: float | None = None) -> list[tuple[str, float]]:
    """``(layer, drop in points)`` when only that layer is int8, worst first."""
    baseline = score(model) if baseline is None else baseline
    drops = []
    for name in layers:
        damaged = copy.deepcopy(model)
        handle = fake_int8_(damaged.get_submodule(name))
        drops.append((name, round((baseline - score(damaged)) * 100, 4)))
        handle.remove()
    return sorted(drops, key=lambda d: -d[1])


def quantizable_layers(model: nn.Module, skip) -> list[str]:
    """The Linear and Conv layers X86InductorQuantizer annotates, minus those already skipped."""
    kinds = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
    return [n for n, m in model.named_modules() if isinstance(m, kinds) and not skip.skips(m, n)]
