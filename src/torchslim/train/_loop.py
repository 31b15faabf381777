"""The training loop: ``fit(model, data, TrainConfig(...))``.

Read ``fit`` top to bottom: set-up, optional resume, then epochs of micro-batches. Each
optimizer step is: k micro-batches (forward under autocast, backward of loss/k; DDP syncs
gradients only on the k-th), unscale, clip, step, schedule, hooks, zero grads. Each epoch
ends with a validation pass, best-weights bookkeeping, early stopping and a checkpoint.
Compression techniques reuse it through ``loss_fn``, ``teacher`` and ``hooks``.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable, Iterable
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
from torchslim.train._modules import enable_activation_checkpointing, set_mode
from torchslim.train._optim import build_optimizer, build_scheduler, current_lr
from torchslim.train._state import FitResult, Hooks, TrainState

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
    from torchslim.device import resolve_device

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
        return _fit(model, data, config, device, dist_info, loss_fn, log, teacher, Hooks(hooks), Path(out_dir) if out_dir else None, resume, progress)
    finally:
        teardown_distributed(dist_info)


def _fit(model, data, config: TrainConfig, device: torch.device, dist_info: DistInfo, loss_fn, log, teacher, hooks: Hooks, out_dir: Path | None, resume: bool, progress: bool) -> FitResult:
    autocast_dtype = _autocast_dtype(config.precision, device)
    if autocast_dtype == torch.bfloat16 and device.type == "cpu" and not _cpu_has_fast_bf16() and log and dist_info.is_main:
        # Measured here (AVX2-only EPYC): resnet-mini's step was ~14x slower in bf16 than fp32,
        # because bf16 convolutions fall back to aten's reference _slow_conv2d.
        log("warning: this CPU has no bf16 hardware (AVX512-BF16/AMX); bf16 autocast runs convolutions "
            "on a slow reference path and is usually slower than fp32 here.")
    _seed_everything(config.seed)

    # --- the model: optional surgery, then device, wrappers, activation checkpointing ---------
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
    undo_checkpointing = enable_activation_checkpointing(model, config.checkpoint_blocks) if config.checkpoint_blocks else None
    train_model = _wrap(model, config, device, dist_info)
    loss_fn = loss_fn or _cross_entropy(config.label_smoothing)

    def forward_loss(inputs, targets):
        return loss_fn(train_model(*as_args(inputs)), targets, inputs)

    # Compiling forward+loss lets inductor fuse the loss into the model's last kernels; the
    # backward is compiled with it (AOTAutograd). The first step pays the compile time.
    step_fn = torch.compile(forward_loss) if config.compile else forward_loss

    # --- validation: accuracy, or for embeddings fidelity to the teacher's outputs -------------
    # The teacher is frozen, so its validation outputs are computed once, not every epoch.
    if data.task == "classification":
        val_key = "val_accuracy"

        def validate() -> float:
            return evaluate(model, data.val, device=device, dist_info=dist_info)
    else:
        val_key = "val_fidelity"
        reference = _predict_shard(teacher, data.val, device, dist_info)

        def validate() -> float:
            return evaluate_fidelity(model, data.val, reference, device=device, dist_info=dist_info)

    # --- data: every rank sees its own shard; the order depends only on (seed, epoch) ---------
    # Text batches are cut to their longest sentence (data/_text.trim_padding): 3x faster
    # distillation of MiniLM on short sentences, measured. Not for graphs traced at a fixed length (QAT's exported programs) or a
    # compiled step, which would recompile for every new length.
    trims = not isinstance(model, torch.fx.GraphModule) and not config.compile
    collate = getattr(data.train, "training_collate", None) if trims else None
    sampler = ResumableSampler(data.train, num_replicas=dist_info.world_size, rank=dist_info.rank, seed=config.seed)
    micro_per_epoch = math.ceil(sampler.num_samples / config.batch_size)
    steps_per_epoch = math.ceil(micro_per_epoch / config.grad_accum_steps)

    optimizer = build_optimizer(model, config)
    total_steps = config.epochs * steps_per_epoch
    scheduler = build_scheduler(optimizer, config, total_steps, steps_per_epoch)
    # GradScaler multiplies the loss so fp16 gradients do not underflow, and skips steps whose
    # gradients overflowed. bf16 has fp32's exponent range and needs no scaler.
    scaler = torch.amp.GradScaler(device.type, enabled=config.precision == "fp16")
    state = TrainState(model, optimizer, scheduler, config, device, dist_info, teacher)

    best_acc, best_weights, bad_epochs, start_epoch, skip_micro = -1.0, None, 0, 0, 0
    epoch_loss, epoch_steps = 0.0, 0  # this epoch's summed step losses (for the epoch's mean)
    checkpoint_path = out_dir / ckpt.CHECKPOINT_NAME if out_dir else None
    if resume:
        saved = ckpt.load_checkpoint(checkpoint_path, model)
        if saved["train_samples"] != len(data.train):
            raise TrainingError(f"Cannot resume from {checkpoint_path}: it was written for a training split of {saved['train_samples']} samples, this data has {len(data.train)}. Resume with the same --data, or use a fresh --out.")
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        if saved["total_steps"] == total_steps:
            scheduler.load_state_dict(saved["scheduler"])
        else:  # --epochs changed: follow the schedule for the new length from the current step
            _fast_forward(scheduler, optimizer, saved["step"])
            if log and dist_info.is_main:
                log(f"notice: the run now has {total_steps} steps instead of {saved['total_steps']}; the LR schedule is stretched to the new length.")
        scaler.load_state_dict(saved["scaler"])
        ckpt.set_rng_state(saved["rng"])
        start_epoch, skip_micro, state.step = saved["epoch"], saved["micro_batch"], saved["step"]
        best_acc, best_weights, bad_epochs = saved["best_val_accuracy"], saved["best_model"], saved["bad_epochs"]
        state.history = list(saved["history"])
        epoch_loss, epoch_steps = saved["epoch_loss"], saved["epoch_steps"]
        if log and dist_info.is_main:
            log(f"resuming from {checkpoint_path}: epoch {start_epoch + 1}, step {state.step}")

    def save_checkpoint(epoch: int, micro_batch: int) -> None:
        if checkpoint_path is None or not dist_info.is_main:
            return
        ckpt.save_checkpoint(checkpoint_path, {
            "model_fingerprint": ckpt.model_fingerprint(model), "model_class": type(model).__name__,
            "model": ckpt.cpu_state_dict(model), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "rng": ckpt.rng_state(),
            "epoch": epoch, "micro_batch": micro_batch, "step": state.step,
            "best_val_accuracy": best_acc, "best_model": best_weights, "bad_epochs": bad_epochs,
            "history": state.history, "config": config.model_dump(),
            "total_steps": total_steps, "train_samples": len(data.train),
            "epoch_loss": epoch_loss if micro_batch else 0.0, "epoch_steps": epoch_steps if micro_batch else 0,
        })

    metrics = MetricsLogger(out_dir, enabled=dist_info.is_main, append=resume, log=log, progress=progress and dist_info.is_main)
    stopped_early, epoch = False, start_epoch
    try:
        for epoch in range(start_epoch, config.epochs):
            state.epoch = epoch + 1
            skip = skip_micro if epoch == start_epoch else 0
            sampler.set_position(epoch, skip * config.batch_size)
            metrics.start_epoch(epoch + 1, config.epochs, micro_per_epoch, done=skip)
            set_mode(model, True)
            micro, loss_sum = skip, torch.zeros((), device=device)
            if epoch != start_epoch:
                epoch_loss, epoch_steps = 0.0, 0
            window_start, window_samples = time.perf_counter(), 0
            for inputs, targets in loader(data.train, config.batch_size, sampler=sampler, device=device, seed=config.seed,
                                          collate_fn=collate):
                inputs, targets = to_device(inputs, device), to_device(targets, device)
                # This micro-batch's accumulation group; the epoch's last group may be short,
                # and dividing by its real size keeps the gradient a mean, not a partial sum.
                group_start = (micro // config.grad_accum_steps) * config.grad_accum_steps
                group_size = min(config.grad_accum_steps, micro_per_epoch - group_start)
                last_in_group = micro + 1 == group_start + group_size
                # DDP all-reduces gradients in every backward; skipping it on all but the
                # group's last micro-batch saves (k-1)/k of the communication.
                sync = contextlib.nullcontext() if last_in_group or not dist_info.enabled else train_model.no_sync()
                with sync:
                    with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                        loss = step_fn(inputs, targets)
                    scaler.scale(loss / group_size).backward()
                loss_sum += loss.detach().float()
                micro += 1
                window_samples += _batch_len(targets, inputs)
                metrics.advance({"loss": state.loss if state.loss is not None else float("nan"), "lr": current_lr(optimizer)})
                if not last_in_group:
                    continue

                # One .item() per optimizer step: the NaN check and the loss log need it.
                state.loss = loss_sum.item() / group_size
                loss_sum.zero_()
                if broadcast_flag(not math.isfinite(state.loss), device, dist_info):
                    raise TrainingError(
                        f"Training diverged: the loss became {state.loss} at epoch {epoch + 1}, step {state.step + 1}. "
                        "The last good checkpoint (if any) is kept. Lower lr, enable clip_grad_norm, or use "
                        "precision bf16 instead of fp16."
                    )
                state.grad_norm = None
                if config.clip_grad_norm is not None or config.clip_grad_value is not None:
                    scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
                    params = [p for p in model.parameters() if p.grad is not None]
                    state.grad_norm = float(nn.utils.clip_grad_norm_(params, config.clip_grad_norm or math.inf))
                    if config.clip_grad_value is not None:
                        nn.utils.clip_grad_value_(params, config.clip_grad_value)
                state.lr = current_lr(optimizer)  # the LR this step used (logged as such)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                state.step += 1
                epoch_loss, epoch_steps = epoch_loss + state.loss, epoch_steps + 1
                hooks.step_end(state)
                optimizer.zero_grad(set_to_none=True)

                if state.step % config.log_every_steps == 0:
                    elapsed = time.perf_counter() - window_start
                    record = {"kind": "train", "epoch": epoch + 1, "step": state.step, "loss": state.loss, "lr": state.lr,
                              "samples_per_s": window_samples * dist_info.world_size / max(elapsed, 1e-9)}
                    if state.grad_norm is not None:
                        record["grad_norm"] = state.grad_norm
                    record.update(_memory_stats(device))
                    metrics.write(record)
                    window_start, window_samples = time.perf_counter(), 0
                if config.checkpoint_every_steps and state.step % config.checkpoint_every_steps == 0:
                    save_checkpoint(epoch, micro)
                if state.stop:
                    break

            # --- end of epoch: validate (sharded over ranks, summed), keep the best, maybe stop ---
            # DDP broadcasts rank 0's buffers (BN running stats) at each forward, so after the
            # last one every rank holds its own update; make rank 0's authoritative everywhere.
            broadcast_buffers(model, dist_info)
            val_acc = validate()
            state.val_accuracy = val_acc
            mean_loss = all_reduce_sum([epoch_loss, float(epoch_steps)], device, dist_info)
            record = {"kind": "epoch", "epoch": epoch + 1, "step": state.step, "loss": mean_loss[0] / max(1.0, mean_loss[1]),
                      val_key: val_acc, "lr": state.lr}
            state.history.append({k: v for k, v in record.items() if k != "kind"})
            hooks.epoch_end(state)
            improved = best_weights is None or val_acc > best_acc + config.early_stopping_min_delta
            bad_epochs = 0 if improved else bad_epochs + 1
            if val_acc >= best_acc:  # ties keep the later (longer-trained) weights
                best_acc, best_weights = val_acc, ckpt.cpu_state_dict(model)
                if out_dir is not None and dist_info.is_main:
                    ckpt.save_best_weights(out_dir / ckpt.BEST_WEIGHTS_NAME, best_weights)
            metrics.write(record, echo=True)
            stopped_early = config.early_stopping_patience is not None and bad_epochs >= config.early_stopping_patience
            last = stopped_early or state.stop or epoch + 1 == config.epochs
            if last or (epoch + 1) % config.checkpoint_every_epochs == 0:
                save_checkpoint(epoch + 1, 0)
            if last:
                break
    finally:
        metrics.close()
        if undo_checkpointing is not None:
            undo_checkpointing()

    if best_weights is not None:
        model.load_state_dict(best_weights)
    set_mode(model, False)
    epochs_run = len(state.history)
    return FitResult(best_acc, epochs_run, state.history, state.step, stopped_early, checkpoint_path)


@torch.no_grad()
def evaluate(model: nn.Module, dataset, *, device: torch.device, dist_info: DistInfo = DistInfo(), batch_size: int = 256) -> float:
    """Top-1 accuracy over ``dataset``; under DDP each rank scores every world_size-th sample
    (no padding, so nothing is counted twice) and the counts are summed across ranks."""
    from torchslim.data._evaluate import predict

    shard = _shard(dataset, dist_info)
    set_mode(model, False)
    correct, total = 0.0, 0.0
    if len(shard):
        logits, targets = predict(model, shard, batch_size=batch_size, device=device)
        correct, total = float((logits.argmax(dim=-1) == targets).sum()), float(len(targets))
    correct, total = all_reduce_sum([correct, total], device, dist_info)
    return correct / max(total, 1.0)


@torch.no_grad()
def evaluate_fidelity(model: nn.Module, dataset, reference: torch.Tensor, *, device: torch.device, dist_info: DistInfo = DistInfo(), batch_size: int = 256) -> float:
    """Mean cosine similarity of ``model``'s outputs to ``reference``, the reference model's
    outputs on this rank's shard of ``dataset`` (``_predict_shard``); summed across ranks."""
    set_mode(model, False)
    total, count = 0.0, 0.0
    if len(reference):
        outputs = _predict_shard(model, dataset, device, dist_info, batch_size)
        total = float(F.cosine_similarity(outputs.flatten(1), reference.flatten(1), dim=1).sum())
        count = float(len(outputs))
    total, count = all_reduce_sum([total, count], device, dist_info)
    return total / max(count, 1.0)


@torch.no_grad()
def _predict_shard(model: nn.Module, dataset, device: torch.device, dist_info: DistInfo, batch_size: int = 256) -> torch.Tensor:
    from torchslim.data._evaluate import predict

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
