"""``TrainConfig``: every knob of the training loop, declared once with its documentation.

A pydantic model with ``extra="forbid"`` so that a typo in a YAML file (``learning_rate:``)
is an error naming the field instead of a silently ignored key. Construction validates:
``TrainConfig(epochs=0)`` raises ``ConfigError`` whether it comes from Python or YAML.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from torchslim.errors import ConfigError, config_error_from_pydantic

Optimizer = Literal["sgd", "adam", "adamw"]
Schedule = Literal["onecycle", "cosine", "step", "constant"]
Precision = Literal["fp32", "bf16", "fp16"]
InitScheme = Literal["xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal", "orthogonal"]


class TrainConfig(BaseModel):
    """How to train. Defaults train every zoo model to its floor on ``digits`` quickly."""

    model_config = ConfigDict(extra="forbid", frozen=False, validate_assignment=True)

    # --- length and data -------------------------------------------------------------
    epochs: int = Field(20, ge=1, description="Passes over the training split.")
    batch_size: int = Field(64, ge=1, description="Micro-batch size per process. The effective batch is batch_size x grad_accum_steps x world size.")
    seed: int = Field(0, ge=0, le=2**63 - 1, description="Seeds parameters' init, shuffling and dropout; same seed -> same weights on CPU.")

    # --- optimizer ---------------------------------------------------------------------
    optimizer: Optimizer = Field("adamw", description="sgd (with momentum), adam or adamw.")
    lr: float = Field(3e-3, gt=0, description="Peak learning rate (OneCycle's max_lr, cosine's post-warm-up LR).")
    weight_decay: float = Field(1e-4, ge=0, description="L2 penalty (decoupled for adamw).")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum (ignored by adam/adamw).")
    nesterov: bool = Field(False, description="Nesterov momentum for SGD.")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="Label smoothing of the default cross-entropy loss.")

    # --- learning-rate schedule (stepped once per optimizer step) -------------------------
    schedule: Schedule = Field("onecycle", description="onecycle, cosine (with linear warm-up), step or constant.")
    onecycle_pct_start: float = Field(0.3, gt=0, lt=1, description="OneCycle: fraction of the steps spent rising to the peak LR.")
    warmup_fraction: float = Field(0.05, ge=0, lt=1, description="Cosine: fraction of the steps of linear warm-up from 0 to lr.")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="Cosine: the final LR as a fraction of lr.")
    step_epochs: int = Field(10, ge=1, description="Step: multiply the LR by step_gamma every this many epochs.")
    step_gamma: float = Field(0.1, gt=0, le=1, description="Step: the LR decay factor.")

    # --- speed and stability ----------------------------------------------------------------
    precision: Precision = Field("fp32", description="fp32, bf16 (autocast; CPU and CUDA) or fp16 (autocast + GradScaler; CUDA only).")
    grad_accum_steps: int = Field(1, ge=1, description="Micro-batches summed per optimizer step (DDP syncs only on the last).")
    clip_grad_norm: float | None = Field(None, gt=0, description="Clip the global gradient L2 norm to this; the pre-clip norm is logged.")
    clip_grad_value: float | None = Field(None, gt=0, description="Clamp every gradient element to [-v, v].")
    checkpoint_blocks: list[str] = Field(default_factory=list, description="Module names (fnmatch patterns) whose activations are recomputed in backward (saves memory, costs ~1 extra forward of those blocks).")
    compile: bool = Field(False, description="torch.compile the forward+loss of the training step (first step pays a 15-20 s compile).")
    data_parallel: bool = Field(False, description="Single-process nn.DataParallel over all visible GPUs (a fallback; prefer torchrun + DDP).")

    # --- model preparation --------------------------------------------------------------
    init: InitScheme | None = Field(None, description="Re-initialize weights before training (biases 0, norm weight 1 / bias 0); None keeps the model's own init.")
    insert_batchnorm: list[str] = Field(default_factory=list, description="Names of Conv/Linear modules to follow with a new BatchNorm before training.")

    # --- validation, early stopping, checkpoints, logging ---------------------------------------
    early_stopping_patience: int | None = Field(None, ge=1, description="Stop after this many epochs without val-accuracy improvement (None: never).")
    early_stopping_min_delta: float = Field(0.0, ge=0, description="An improvement smaller than this does not count.")
    checkpoint_every_steps: int | None = Field(None, ge=1, description="Also write a resumable checkpoint every this many optimizer steps (needs an out dir).")
    checkpoint_every_epochs: int = Field(1, ge=1, description="Write a resumable checkpoint every this many epochs (needs an out dir).")
    log_every_steps: int = Field(10, ge=1, description="Write a metrics line every this many optimizer steps.")

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as e:
            raise config_error_from_pydantic(e, "training config") from None

    @model_validator(mode="after")
    def _check_combinations(self) -> TrainConfig:
        if self.clip_grad_norm is not None and self.clip_grad_value is not None:
            raise ValueError("clip_grad_norm and clip_grad_value are both set; choose one clipping method")
        return self

    def __setattr__(self, name: str, value: Any) -> None:
        try:
            super().__setattr__(name, value)
        except ValidationError as e:
            raise config_error_from_pydantic(e, "training config") from None


def load_train_config(path: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """A ``TrainConfig`` from a YAML file (optional), with ``overrides`` (None values skipped)."""
    raw: dict[str, Any] = {}
    if path is not None:
        import yaml

        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"Training config {str(path)!r} does not exist. Give a YAML file of TrainConfig fields (see docs/training.md).")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise ConfigError(f"Training config {str(path)!r} is not valid YAML: {e}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"Training config {str(path)!r} must be a mapping of field: value, not a {type(loaded).__name__}.")
        raw.update(loaded)
    raw.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**raw)
