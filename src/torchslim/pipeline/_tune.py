"""Runtime settings of a candidate: fixed by the recipe, tuned by measurement, or the default.

After a candidate's artifact is written, and before it is measured, its runtime settings are
chosen and written into its manifest, so the measurement, the memory/cold-start probe (a fresh
process loading the artifact) and a user's ``torchslim.load`` all run the same settings.

The tuning search (a recipe's ``tuning:``) is short and bounded: at most ``max_tries``
settings from the runtime's space below, the default first, loaded and timed interleaved in
``max_seconds`` (``bench._tune``) at the objective's batch (latency, size, balanced: batch 1;
throughput: the largest batch). A try replaces the default only when its median beats the
default's by ``min_gain`` (3%): measured noise on a shared host is a few percent, and a pick
that is merely "not slower" is not worth a non-default setting. Precision is never tuned: it
changes outputs, and the accuracy figure was measured at the artifact's own precision.
Every try is recorded in the candidate's ``runtime_settings.tuning`` (report.json / html).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel

from torchslim.artifacts import load
from torchslim.bench import TimedTry, Timer, time_interleaved, time_tries
from torchslim.core.notes import Note
from torchslim.pipeline._recipe import TuningSpec
from torchslim.report import RuntimeRecord, SettingsTry, SettingsTuning
from torchslim.runtime import (
    SETTINGS_CLASSES,
    OpenVINOSettings,
    OrtSettings,
    TorchSettings,
    apply_torch_settings,
    default_settings,
    parse_settings,
    write_settings,
)

TORCH_RUNTIMES = ("eager", "compile", "aoti")


def tuning_space(runtime: str, objective: str, threads: int) -> list[BaseModel]:
    """The settings worth a try for ``runtime``, the default first, the likeliest gains next.

    Fewer threads than cores pays on a shared or small host (less contention, less
    synchronization per op); ORT's ``extended`` level skips the layout transforms of ``all``;
    OpenVINO's THROUGHPUT hint splits the cores into streams (a win for large batches).
    """
    half = max(1, threads // 2)
    space: list[BaseModel | None]
    if runtime == "onnxruntime":
        space = [OrtSettings(), OrtSettings(intra_op_threads=half) if threads > 1 else None,
                 OrtSettings(graph_optimization_level="extended"),
                 OrtSettings(execution_mode="parallel", inter_op_threads=2) if threads > 1 else None]
    elif runtime == "openvino":
        hint = [OpenVINOSettings(performance_hint="THROUGHPUT"),
                OpenVINOSettings(performance_hint="THROUGHPUT", num_streams=min(threads, 2)) if threads > 1 else None]
        fewer = [OpenVINOSettings(threads=half) if threads > 1 else None]
        space = [OpenVINOSettings(), *(hint + fewer if objective == "throughput" else fewer + hint)]
    elif runtime in TORCH_RUNTIMES:
        space = [TorchSettings(runtime=runtime), TorchSettings(runtime=runtime, threads=half) if threads > 1 else None]
    else:
        return []
    return [s for s in space if s is not None]


def tuning_batch(objective: str, batch_sizes: Sequence[int]) -> int:
    if objective == "throughput":
        return max(batch_sizes)
    return 1 if 1 in batch_sizes else min(batch_sizes)


def pick(tries: Sequence[TimedTry], min_gain: float) -> int:
    """The index of the chosen try: the fastest, when it beats the default (index 0) by
    ``min_gain``; otherwise the default. Never a try slower than the default."""
    base = tries[0].p50_ms if tries else None
    measured = [i for i, t in enumerate(tries) if t.p50_ms is not None]
    if base is None or not measured:
        return 0
    best = min(measured, key=lambda i: (tries[i].p50_ms, i))
    return best if tries[best].p50_ms < base * (1.0 - min_gain) else 0


def describe(settings: BaseModel) -> str:
    """The fields that differ from the runtime's defaults, e.g. ``intra_op_threads=1``."""
    default = default_settings(settings.runtime)
    changed = [f"{k}={v}" for k, v in settings.model_dump().items()
               if k != "runtime" and default is not None and getattr(default, k) != v]
    return ", ".join(changed) or "defaults"


def tune(artifact: Path, runtime: str, spec: TuningSpec, *, objective: str, batch_sizes: Sequence[int],
         make_inputs: Callable[[int], tuple], device: torch.device, timer: Timer = time_interleaved,
         say: Callable[[str], None] = lambda _m: None) -> tuple[BaseModel, SettingsTuning]:
    """Try ``runtime``'s settings on ``artifact``; (the chosen settings, the record of every try)."""
    batch = tuning_batch(objective, batch_sizes)
    space = tuning_space(runtime, objective, torch.get_num_threads())[: spec.max_tries]
    inputs = make_inputs(batch)
    base = None
    if runtime in TORCH_RUNTIMES:
        # One load serves every try (threads are set around each call); its first call, a compile
        # on ``compile``, is made here so that it does not eat the tries' loading budget.
        base = load(artifact, runtime=runtime, device=device, settings=space[0])
        with torch.no_grad():
            base(*inputs)

    def loader(settings: BaseModel) -> Callable[[], Callable[[], object]]:
        def make() -> Callable[[], object]:
            fn = apply_torch_settings(base, settings) if base is not None else load(
                artifact, runtime=runtime, device=device, settings=settings)
            return lambda: fn(*inputs)
        return make

    say(f"tuning {runtime} settings at batch {batch} ({len(space)} tries, at most {spec.max_seconds:g} s)")
    with torch.no_grad():
        timed = time_tries([loader(s) for s in space], spec.max_seconds, timer)
    chosen = pick(timed, spec.min_gain)
    record = SettingsTuning(objective=objective, batch_size=batch, max_tries=spec.max_tries, max_seconds=spec.max_seconds,
                            min_gain=spec.min_gain, tries=[
                                SettingsTry(settings=s.model_dump(), p50_ms=None if t.p50_ms is None else round(t.p50_ms, 4),
                                            runs=t.runs, error=t.error, chosen=i == chosen)
                                for i, (s, t) in enumerate(zip(space, timed, strict=True))])
    return space[chosen], record


def load_with_settings(artifact: Path, runtime: str, *, fixed: dict[str, Any] | None, spec: TuningSpec | None,
                       objective: str, batch_sizes: Sequence[int], make_inputs: Callable[[int], tuple],
                       device: torch.device, timer: Timer = time_interleaved,
                       say: Callable[[str], None] = lambda _m: None) -> tuple[Any, RuntimeRecord | None, list[Note]]:
    """Choose ``artifact``'s settings (the recipe's, tuned, or the default), write them into its
    manifest and load it with them: (the callable, the report's record, notes)."""
    if runtime not in SETTINGS_CLASSES:
        return load(artifact, runtime=runtime, device=device), None, []
    notes: list[Note] = []
    tuning = None
    if fixed is not None:
        settings, source = parse_settings(runtime, fixed), "recipe"
    elif spec is not None and device.type == "cpu" and len(tuning_space(runtime, objective, torch.get_num_threads())) > 1:
        settings, tuning = tune(artifact, runtime, spec, objective=objective, batch_sizes=batch_sizes,
                                make_inputs=make_inputs, device=device, timer=timer, say=say)
        source = "tuned"
        default_ms = tuning.tries[0].p50_ms
        chosen_ms = next(t.p50_ms for t in tuning.tries if t.chosen)
        if default_ms is not None and chosen_ms is not None:
            verdict = ("kept the default" if tuning.tries[0].chosen else
                       f"{describe(settings)}: {chosen_ms:.3f} ms vs the default's {default_ms:.3f} ms")
            notes.append(Note(kind="technique", text=f"runtime settings tuned on {runtime} at batch {tuning.batch_size} "
                                                     f"({len(tuning.tries)} tries, p50): {verdict}"))
    else:
        settings, source = default_settings(runtime), "default"
    write_settings(artifact, settings, tuned=source == "tuned")
    fn = load(artifact, runtime=runtime, device=device)
    precision = getattr(fn, "execution_precision", None)
    if precision is not None:
        write_settings(artifact, None, effective_precision=str(precision))
    record = RuntimeRecord(runtime=runtime, settings=settings.model_dump(), source=source,
                           effective_precision=None if precision is None else str(precision), tuning=tuning)
    return fn, record, notes
