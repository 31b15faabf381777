"""The training loop: ``fit(model, data, TrainConfig(...))``.

Read ``_fit`` top to bottom: set-up, optional resume, then epochs. An epoch is micro-batches
(``_train_epoch``); every k-th ends an optimizer step (``_optimizer_step``: unscale, clip,
step, schedule, hooks, zero grads); the epoch ends with validation, best-weights bookkeeping,
early stopping and a checkpoint (``_end_epoch``). Compression techniques reuse it through
``loss_fn``, ``teacher`` and ``hooks``.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from torchslim.data import DataBundle, as_args, loader, to_device
from torchslim.errors import ConfigError, TrainingError, UnsupportedError
from torchslim.train import _checkpoint as ckpt
from torchslim.train._config import TrainConfig
from torchslim.train._distributed import (
    DistInfo,
    ResumableSampler,
    all_reduce_sum,
    broadcast_buffers,
    broadcast_flag,
    setup_distributed,
    teardown_distributed,
)
from torchslim.train._metrics import MetricsLogger
from torchslim.train._modules import enable_activation_checkpointing, is_exported_graph, set_mode
from torchslim.train._optim import build_optimizer, build_scheduler, current_lr
from torchslim.train._state import FitResult, Hooks, Progress, TrainState

LossFn = Callable[[Any, torch.Tensor, Any], torch.Tensor]


def fit(
    model: nn.Module,
    data: DataBundle,
    config: TrainConfig | None = None,
    *,
    device: str | torch.device = "cpu",
    loss_fn: LossFn | None = None,
    log: Callable[[str], None] | None = None,
    teacher: nn.Module | None = None,
    hooks: Iterable[Any] = (),
    out_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = False,
) -> FitResult:
    """Train ``model`` in place on ``data.train``; keep the weights with the best val accuracy.

    ``loss_fn(outputs, targets, inputs)`` replaces cross-entropy (distillation passes one that
    calls its teacher); ``teacher`` is held frozen in eval mode on ``device``; ``hooks`` see a
    ``TrainState`` after every step/epoch. Embedding data (no labels) needs both: ``loss_fn``
    is the only training signal (its targets are placeholders), and the best epoch is the one
    with the highest validation fidelity, the mean cosine similarity of the model's outputs to
    the teacher's (``FitResult.best_val_accuracy`` then holds it, logged as ``val_fidelity``).
    With ``out_dir``, resumable checkpoints, the best weights and ``metrics.jsonl`` are
    written there (rank 0 only) and ``resume=True`` continues from its checkpoint. Under
    torchrun the run is DDP across all processes.
    Returns ``FitResult``; the model is left in eval mode with the best weights.
    """
    from torchslim.core.device import resolve_device

    config = config or TrainConfig()
    if data.task != "classification" and loss_fn is None:
        raise TrainingError(f"Data {data.spec!r} is a {data.task} task without labels: plain training fits classifiers only "
                            "(embedding models are used as given). To train one toward a reference model's outputs, "
                            "use torchslim.distill, or fit(..., loss_fn=..., teacher=...).")
    if data.task != "classification" and teacher is None:
        raise TrainingError(f"Data {data.spec!r} is a {data.task} task without labels: fit needs teacher= besides loss_fn, "
                            "the reference model whose validation outputs pick the best epoch (fidelity).")
    if resume and out_dir is None:
        raise TrainingError("resume=True needs the out dir of the run to continue (--out DIR).")
    dist_info, device = setup_distributed(resolve_device(device))
    try:
        run = _set_up(model, data, config, device, dist_info, loss_fn=loss_fn, log=log, teacher=teacher,
                      hooks=Hooks(hooks), out_dir=Path(out_dir) if out_dir else None, resume=resume, progress=progress)
        return _fit(run, resume)
    finally:
        teardown_distributed(dist_info)


@dataclass
class _Run:
    """Everything ``_set_up`` builds once and the loop's parts share (none of it changes)."""

    model: nn.Module  # the user's module
    train_model: nn.Module  # what the forward runs: the model, or its DDP/DataParallel wrapper
    step_fn: Callable[[Any, Any], torch.Tensor]  # (inputs, targets) -> loss, maybe compiled
    data: DataBundle
    config: TrainConfig
    device: torch.device
    dist: DistInfo
    autocast_dtype: torch.dtype | None
    collate: Callable | None  # the training split's padding trim, when it may be used
    sampler: ResumableSampler
    micro_per_epoch: int
    total_steps: int
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    state: TrainState  # what hooks see; the loop updates it as it goes
    hooks: Hooks
    validate: Callable[[], float]
    val_key: str  # val_accuracy, or val_fidelity for embedding data
    metrics: MetricsLogger
    out_dir: Path | None
    checkpoint_path: Path | None
    log: Callable[[str], None] | None
    undo_checkpointing: Callable[[], None] | None

    def notice(self, message: str) -> None:
        if self.log and self.dist.is_main:
            self.log(message)


def _fit(run: _Run, resume: bool) -> FitResult:
    done = _resume(run) if resume else Progress()
    try:
        while done.epoch < run.config.epochs:
            _train_epoch(run, done)
            if _end_epoch(run, done):
                break
    finally:
        run.metrics.close()
        if run.undo_checkpointing is not None:
            run.undo_checkpointing()
    if done.best_model is not None:
        run.model.load_state_dict(done.best_model)
    set_mode(run.model, False)
    state = run.state
    return FitResult(done.best_val_accuracy, len(state.history), state.history, state.step, done.stopped_early, run.checkpoint_path)


def _set_up(model, data, config: TrainConfig, device: torch.device, dist_info: DistInfo, *, loss_fn: LossFn | None,
            log, teacher: nn.Module | None, hooks: Hooks, out_dir: Path | None, resume: bool, progress: bool) -> _Run:
    autocast_dtype = _autocast_dtype(config.precision, device)
    if autocast_dtype == torch.bfloat16 and device.type == "cpu" and not _cpu_has_fast_bf16() and log and dist_info.is_main:
        # Measured here (AVX2-only EPYC): resnet-mini's step was ~14x slower in bf16 than fp32,
        # because bf16 convolutions fall back to aten's reference _slow_conv2d.
        log("warning: this CPU has no bf16 hardware (AVX512-BF16/AMX); bf16 autocast runs convolutions "
            "on a slow reference path and is usually slower than fp32 here.")
    _seed_everything(config.seed)
    undo_checkpointing = _prepare_models(model, teacher, config, device)
    train_model = _wrap(model, config, device, dist_info)
    loss_fn = loss_fn or _cross_entropy(config.label_smoothing)

    def forward_loss(inputs, targets):
        return loss_fn(train_model(*as_args(inputs)), targets, inputs)

    # Compiling forward+loss lets inductor fuse the loss into the model's last kernels; the
    # backward is compiled with it (AOTAutograd). The first step pays the compile time.
    step_fn = torch.compile(forward_loss) if config.compile else forward_loss
    val_key, validate = _validation(model, teacher, data, device, dist_info)

    # Every rank sees its own shard of the data; the order depends only on (seed, epoch).
    # Text batches are cut to their longest sentence (data/_text.trim_padding): 3x faster
    # distillation of MiniLM on short sentences, measured. Not for graphs traced at a fixed
    # length (QAT's exported programs) or a compiled step, which would recompile for every new length.
    trims = not isinstance(model, torch.fx.GraphModule) and not config.compile
    sampler = ResumableSampler(data.train, num_replicas=dist_info.world_size, rank=dist_info.rank, seed=config.seed)
    micro_per_epoch = math.ceil(sampler.num_samples / config.batch_size)
    steps_per_epoch = math.ceil(micro_per_epoch / config.grad_accum_steps)
    optimizer = build_optimizer(model, config)
    total_steps = config.epochs * steps_per_epoch
    scheduler = build_scheduler(optimizer, config, total_steps, steps_per_epoch)
    # GradScaler multiplies the loss so fp16 gradients do not underflow, and skips steps whose
    # gradients overflowed. bf16 has fp32's exponent range and needs no scaler.
    scaler = torch.amp.GradScaler(device.type, enabled=config.precision == "fp16")
    return _Run(
        model, train_model, step_fn, data, config, device, dist_info, autocast_dtype,
        collate=getattr(data.train, "training_collate", None) if trims else None,
        sampler=sampler, micro_per_epoch=micro_per_epoch, total_steps=total_steps,
        optimizer=optimizer, scheduler=scheduler, scaler=scaler,
        state=TrainState(model, optimizer, scheduler, config, device, dist_info, teacher), hooks=hooks,
        validate=validate, val_key=val_key,
        metrics=MetricsLogger(out_dir, enabled=dist_info.is_main, append=resume, log=log, progress=progress and dist_info.is_main),
        out_dir=out_dir, checkpoint_path=out_dir / ckpt.CHECKPOINT_NAME if out_dir else None, log=log,
        undo_checkpointing=undo_checkpointing,
    )


def _prepare_models(model: nn.Module, teacher: nn.Module | None, config: TrainConfig, device: torch.device):
    """Optional surgery, then the device, a frozen teacher and activation checkpointing.
    Returns the function that undoes the checkpointing, or None."""
    if config.insert_batchnorm:
        from torchslim.train.batchnorm import insert_batchnorm

        insert_batchnorm(model, config.insert_batchnorm)
    if config.init:
        from torchslim.train.init import init_weights

        init_weights(model, config.init)
    model.to(device)
    if teacher is not None:
        teacher.to(device).requires_grad_(False)
        set_mode(teacher, False)
    return enable_activation_checkpointing(model, config.checkpoint_blocks) if config.checkpoint_blocks else None


def _validation(model, teacher, data: DataBundle, device: torch.device, dist_info: DistInfo) -> tuple[str, Callable[[], float]]:
    """The epoch's score: accuracy, or for embeddings fidelity to the teacher's outputs. The
    teacher is frozen, so its validation outputs are computed once, not every epoch."""
    if data.task == "classification":
        return "val_accuracy", lambda: evaluate(model, data.val, device=device, dist_info=dist_info)
    reference = _predict_shard(teacher, data.val, device, dist_info)
    return "val_fidelity", lambda: evaluate_fidelity(model, data.val, reference, device=device, dist_info=dist_info)


def _resume(run: _Run) -> Progress:
    """Load the checkpoint into the model, optimizer, scheduler, scaler and RNGs; return where
    the run stood."""
    path, state = run.checkpoint_path, run.state
    saved = ckpt.TrainCheckpoint.from_checkpoint(ckpt.load_checkpoint(path, run.model))
    if saved.train_samples != len(run.data.train):
        raise TrainingError(f"Cannot resume from {path}: it was written for a training split of {saved.train_samples} samples, this data has {len(run.data.train)}. Resume with the same --data, or use a fresh --out.")
    run.model.load_state_dict(saved.model)
    run.optimizer.load_state_dict(saved.optimizer)
    if saved.total_steps == run.total_steps:
        run.scheduler.load_state_dict(saved.scheduler)
    else:  # --epochs changed: follow the schedule for the new length from the current step
        _fast_forward(run.scheduler, run.optimizer, saved.step)
        run.notice(f"notice: the run now has {run.total_steps} steps instead of {saved.total_steps}; the LR schedule is stretched to the new length.")
    run.scaler.load_state_dict(saved.scaler)
    ckpt.set_rng_state(saved.rng)
    state.step, state.history = saved.step, list(saved.history)
    run.notice(f"resuming from {path}: epoch {saved.progress.epoch + 1}, step {state.step}")
    return saved.progress


def _save_checkpoint(run: _Run, done: Progress) -> None:
    if run.checkpoint_path is None or not run.dist.is_main:
        return
    checkpoint = ckpt.TrainCheckpoint(
        model_fingerprint=ckpt.model_fingerprint(run.model), model_class=type(run.model).__name__,
        model=ckpt.cpu_state_dict(run.model), optimizer=run.optimizer.state_dict(),
        scheduler=run.scheduler.state_dict(), scaler=run.scaler.state_dict(), rng=ckpt.rng_state(),
        config=run.config.model_dump(), total_steps=run.total_steps, train_samples=len(run.data.train),
        step=run.state.step, history=run.state.history, progress=done,
    )
    ckpt.save_checkpoint(run.checkpoint_path, checkpoint.to_checkpoint())


def _train_epoch(run: _Run, done: Progress) -> None:
    """The micro-batches of epoch ``done.epoch`` from ``done.micro_batch`` on (a resumed run
    skips those already seen); stops early when a hook sets ``state.stop``."""
    config, state = run.config, run.state
    state.epoch = done.epoch + 1
    run.sampler.set_position(done.epoch, done.micro_batch * config.batch_size)
    run.metrics.start_epoch(done.epoch + 1, config.epochs, run.micro_per_epoch, done=done.micro_batch)
    set_mode(run.model, True)
    loss_sum, window = torch.zeros((), device=run.device), _Throughput()
    for inputs, targets in loader(run.data.train, config.batch_size, sampler=run.sampler, device=run.device,
                                  seed=config.seed, collate_fn=run.collate):
        inputs, targets = to_device(inputs, run.device), to_device(targets, run.device)
        # This micro-batch's accumulation group; the epoch's last group may be short,
        # and dividing by its real size keeps the gradient a mean, not a partial sum.
        group_start = (done.micro_batch // config.grad_accum_steps) * config.grad_accum_steps
        group_size = min(config.grad_accum_steps, run.micro_per_epoch - group_start)
        last_in_group = done.micro_batch + 1 == group_start + group_size
        loss_sum += _forward_backward(run, inputs, targets, group_size, last_in_group).detach().float()
        done.micro_batch += 1
        window.samples += _batch_len(targets, inputs)
        run.metrics.advance({"loss": state.loss if state.loss is not None else float("nan"), "lr": current_lr(run.optimizer)})
        if not last_in_group:
            continue
        # One .item() per optimizer step: the NaN check and the loss log need it.
        _optimizer_step(run, done, loss_sum.item() / group_size)
        loss_sum.zero_()
        if state.step % config.log_every_steps == 0:
            _log_step(run, done, window)
        if config.checkpoint_every_steps and state.step % config.checkpoint_every_steps == 0:
            _save_checkpoint(run, done)
        if state.stop:
            break


def _forward_backward(run: _Run, inputs, targets, group_size: int, last_in_group: bool) -> torch.Tensor:
    # DDP all-reduces gradients in every backward; skipping it on all but the group's last
    # micro-batch saves (k-1)/k of the communication.
    sync = contextlib.nullcontext() if last_in_group or not run.dist.enabled else run.train_model.no_sync()
    with sync:
        with torch.autocast(run.device.type, dtype=run.autocast_dtype, enabled=run.autocast_dtype is not None):
            loss = run.step_fn(inputs, targets)
        run.scaler.scale(loss / group_size).backward()
    return loss


def _optimizer_step(run: _Run, done: Progress, loss: float) -> None:
    """Check the loss, clip, step the optimizer, scaler and schedule, call the hooks."""
    config, state, optimizer = run.config, run.state, run.optimizer
    state.loss = loss
    if broadcast_flag(not math.isfinite(state.loss), run.device, run.dist):
        raise TrainingError(
            f"Training diverged: the loss became {state.loss} at epoch {done.epoch + 1}, step {state.step + 1}. "
            "The last good checkpoint (if any) is kept. Lower lr, enable clip_grad_norm, or use "
            "precision bf16 instead of fp16."
        )
    state.grad_norm = None
    if config.clip_grad_norm is not None or config.clip_grad_value is not None:
        run.scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
        params = [p for p in run.model.parameters() if p.grad is not None]
        state.grad_norm = float(nn.utils.clip_grad_norm_(params, config.clip_grad_norm or math.inf))
        if config.clip_grad_value is not None:
            nn.utils.clip_grad_value_(params, config.clip_grad_value)
    state.lr = current_lr(optimizer)  # the LR this step used (logged as such)
    run.scaler.step(optimizer)
    run.scaler.update()
    run.scheduler.step()
    state.step += 1
    done.epoch_loss, done.epoch_steps = done.epoch_loss + state.loss, done.epoch_steps + 1
    run.hooks.step_end(state)
    optimizer.zero_grad(set_to_none=True)


class _Throughput:
    """Samples seen since the last train log record, for its samples_per_s (wall clock)."""

    def __init__(self) -> None:
        self.start, self.samples = time.perf_counter(), 0

    def rate(self, world_size: int) -> float:
        rate = self.samples * world_size / max(time.perf_counter() - self.start, 1e-9)
        self.start, self.samples = time.perf_counter(), 0
        return rate


def _log_step(run: _Run, done: Progress, window: _Throughput) -> None:
    state = run.state
    record = {"kind": "train", "epoch": done.epoch + 1, "step": state.step, "loss": state.loss, "lr": state.lr,
              "samples_per_s": window.rate(run.dist.world_size)}
    if state.grad_norm is not None:
        record["grad_norm"] = state.grad_norm
    record.update(_memory_stats(run.device))
    run.metrics.write(record)


def _end_epoch(run: _Run, done: Progress) -> bool:
    """Validate (sharded over ranks, summed), keep the best weights, decide on early stopping,
    checkpoint. Returns True when training should end."""
    config, state = run.config, run.state
    # DDP broadcasts rank 0's buffers (BN running stats) at each forward, so after the
    # last one every rank holds its own update; make rank 0's authoritative everywhere.
    broadcast_buffers(run.model, run.dist)
    val_acc = state.val_accuracy = run.validate()
    loss_sum, steps = all_reduce_sum([done.epoch_loss, float(done.epoch_steps)], run.device, run.dist)
    record = {"kind": "epoch", "epoch": done.epoch + 1, "step": state.step, "loss": loss_sum / max(1.0, steps),
              run.val_key: val_acc, "lr": state.lr}
    state.history.append({k: v for k, v in record.items() if k != "kind"})
    run.hooks.epoch_end(state)
    improved = done.best_model is None or val_acc > done.best_val_accuracy + config.early_stopping_min_delta
    done.bad_epochs = 0 if improved else done.bad_epochs + 1
    if val_acc >= done.best_val_accuracy:  # ties keep the later (longer-trained) weights
        done.best_val_accuracy, done.best_model = val_acc, ckpt.cpu_state_dict(run.model)
        if run.out_dir is not None and run.dist.is_main:
            ckpt.save_best_weights(run.out_dir / ckpt.BEST_WEIGHTS_NAME, done.best_model)
    run.metrics.write(record, echo=True)
    done.stopped_early = config.early_stopping_patience is not None and done.bad_epochs >= config.early_stopping_patience
    last = done.stopped_early or state.stop or done.epoch + 1 == config.epochs
    done.next_epoch()
    if last or done.epoch % config.checkpoint_every_epochs == 0:
        _save_checkpoint(run, done)
    return last


@torch.no_grad()
def evaluate(model: nn.Module, dataset, *, device: torch.device, dist_info: DistInfo = DistInfo(), batch_size: int = 256) -> float:
    """Top-1 accuracy over ``dataset``: ``torchslim.data.accuracy`` (the one implementation), made
    DDP-aware: each rank scores every world_size-th sample (no padding, so nothing is counted
    twice) and the counts are summed across ranks before dividing."""
    from torchslim.data import accuracy_counts, score_ratio

    _to_eval(model)
    counts = accuracy_counts(model, _shard(dataset, dist_info), batch_size=batch_size, device=device)
    return score_ratio(*all_reduce_sum(list(counts), device, dist_info), "accuracy")


@torch.no_grad()
def evaluate_fidelity(model: nn.Module, dataset, reference: torch.Tensor, *, device: torch.device, dist_info: DistInfo = DistInfo(), batch_size: int = 256) -> float:
    """Mean cosine similarity of ``model``'s outputs to ``reference``, the reference model's
    outputs on this rank's shard of ``dataset`` (``_predict_shard``): ``torchslim.data.fidelity``
    with the sums added across ranks before dividing."""
    from torchslim.data import fidelity_sums, score_ratio

    _to_eval(model)
    sums = fidelity_sums(model, reference, _shard(dataset, dist_info), batch_size=batch_size, device=device)
    return score_ratio(*all_reduce_sum(list(sums), device, dist_info), "fidelity")


def _to_eval(model: nn.Module) -> None:
    """An exported (QAT) graph is moved to eval ops here; ``_train_epoch`` moves it back at the
    next epoch. Plain modules are switched, and switched back, by the data/ metric itself."""
    if is_exported_graph(model):
        set_mode(model, False)


@torch.no_grad()
def _predict_shard(model: nn.Module, dataset, device: torch.device, dist_info: DistInfo, batch_size: int = 256) -> torch.Tensor:
    from torchslim.data import predict

    shard = _shard(dataset, dist_info)
    if not len(shard):
        return torch.zeros(0)
    set_mode(model, False)
    return predict(model, shard, batch_size=batch_size, device=device)[0]


def _shard(dataset, dist_info: DistInfo):
    """Under DDP each rank scores every world_size-th sample (no padding, nothing counted twice)."""
    from torch.utils.data import Subset

    return Subset(dataset, range(dist_info.rank, len(dataset), dist_info.world_size)) if dist_info.enabled else dataset


def _cross_entropy(label_smoothing: float) -> LossFn:
    def cross_entropy(outputs, targets, _inputs):
        if isinstance(outputs, (tuple, list)):
            outputs = outputs[0]
        return F.cross_entropy(outputs.float(), targets, label_smoothing=label_smoothing)

    return cross_entropy


def _autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    if precision == "fp32":
        return None
    if precision == "fp16":
        if device.type != "cuda":
            raise UnsupportedError("precision fp16 needs CUDA (CPU autocast has no fp16 GradScaler path). Use precision bf16 on CPU.")
        return torch.float16
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UnsupportedError("precision bf16: this GPU does not support bfloat16 (pre-Ampere). Use precision fp16.")
    return torch.bfloat16


def _cpu_has_fast_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _wrap(model: nn.Module, config: TrainConfig, device: torch.device, dist_info: DistInfo) -> nn.Module:
    if dist_info.enabled:
        if config.data_parallel:
            raise ConfigError("data_parallel is the single-process fallback; under torchrun the run already uses DistributedDataParallel. Remove data_parallel.")
        device_ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    if config.data_parallel:
        if device.type != "cuda" or torch.cuda.device_count() < 2:
            raise UnsupportedError("data_parallel needs 2 or more CUDA GPUs in this process; for several processes use torchrun (DDP).")
        return nn.DataParallel(model)
    return model


def _fast_forward(scheduler, optimizer: torch.optim.Optimizer, steps: int) -> None:
    import warnings

    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"]
    with warnings.catch_warnings():  # "scheduler.step() before optimizer.step()": intended here
        warnings.simplefilter("ignore")
        for _ in range(steps):
            scheduler.step()


def _seed_everything(seed: int) -> None:
    import numpy as np

    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


def _batch_len(targets: Any, inputs: Any) -> int:
    if not isinstance(targets, torch.Tensor):  # no targets (embedding data): count the inputs
        targets = as_args(inputs)[0]
    return int(targets.shape[0]) if targets.ndim else 1


def _memory_stats(device: torch.device) -> dict[str, float]:
    if device.type != "cuda":
        return {}
    return {"cuda_allocated_mib": torch.cuda.memory_allocated(device) / 2**20, "cuda_max_allocated_mib": torch.cuda.max_memory_allocated(device) / 2**20}
