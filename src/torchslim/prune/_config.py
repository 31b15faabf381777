"""Typed pruning configs: one per method, under a discriminated union keyed by ``method``.

    {method: magnitude}  L1 unstructured, the same ratio in every chosen layer
    {method: global}     L1 unstructured ranked across all chosen layers at once
                         (``torch.nn.utils.prune.global_unstructured`` semantics)
    {method: channel}    structured: channels/neurons/heads physically removed with
                         Torch-Pruning's dependency graph

Unstructured sparsity keeps dense shapes: no speed-up on dense kernels, and the file only
shrinks when saved in a sparse or entropy-coded form (``torchslim.share.save_tslim``, the ``encode`` step).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from torchslim.errors import ConfigError, config_error_from_pydantic

LayerType = Literal["linear", "conv"]


class _PruneBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ratio: float = Field(0.5, description="fraction of weights (unstructured) or channels (structured) removed, in [0, 1)")
    iterations: int = Field(1, ge=1, le=100, description="prune -> fine-tune rounds reaching `ratio`; each round removes the same share of the remaining weights")
    finetune_epochs: int = Field(0, ge=0, le=1000, description="fine-tuning epochs after each round (0: none)")
    finetune_lr: float = Field(1e-3, gt=0, le=1.0, description="learning rate of those fine-tuning epochs")
    finetune_hidden_states: bool = Field(False, description="with a teacher: those epochs also match every transformer "
                                         "layer's per-token states (distill's hidden_states) — hf: models only")
    ignore: list[str] = Field(default_factory=list, description="module names never pruned (e.g. the first conv)")
    layer_ratios: dict[str, float] = Field(
        default_factory=dict, description="per-layer ratios overriding `ratio` (see ratios_from_sensitivity)"
    )

    @model_validator(mode="after")
    def _hidden_states_need_finetuning(self):
        if self.finetune_hidden_states and self.finetune_epochs == 0:
            raise ValueError("finetune_hidden_states applies to the fine-tuning epochs; set finetune_epochs > 0 too")
        return self

    @field_validator("ratio")
    @classmethod
    def _ratio_in_range(cls, value: float) -> float:
        return _check_ratio(value)

    @field_validator("layer_ratios")
    @classmethod
    def _layer_ratios_in_range(cls, value: dict[str, float]) -> dict[str, float]:
        for ratio in value.values():
            _check_ratio(ratio)
        return value

    def describe(self) -> str:
        """The step's label in reports, e.g. ``prune(method=channel, ratio=0.5)``."""
        return f"prune(method={self.method}, ratio={self.ratio:g})"  # type: ignore[attr-defined]


def _check_ratio(value: float) -> float:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"must be in [0, 1) (the fraction removed; 1 would remove everything), got {value}")
    return value


class MagnitudePruneConfig(_PruneBase):
    """L1 unstructured pruning, ``ratio`` of the weights in each chosen layer set to zero."""

    method: Literal["magnitude"] = "magnitude"
    # For single weights the L1 and L2 norms rank identically (|w|); taylor needs gradients
    # per weight and is only offered for channels.
    importance: Literal["l1", "l2"] = "l1"
    scope: Literal["uniform"] = "uniform"
    layer_types: list[LayerType] = Field(default_factory=lambda: ["linear", "conv"])


class GlobalPruneConfig(_PruneBase):
    """L1 unstructured pruning ranked across all chosen layers: ``ratio`` of their weights, in total."""

    method: Literal["global"] = "global"
    importance: Literal["l1", "l2"] = "l1"
    scope: Literal["global"] = "global"
    layer_types: list[LayerType] = Field(default_factory=lambda: ["linear", "conv"])


class ChannelPruneConfig(_PruneBase):
    """Structured pruning: ``ratio`` of the channels (per layer, or ranked globally) removed."""

    method: Literal["channel"] = "channel"
    importance: Literal["l1", "l2", "taylor", "fisher"] = Field("l1", description=
        "l1/l2: weight norms; taylor: |weight x gradient| of the classification loss; fisher: squared per-sample "
        "gradients of a mask on each head/neuron (output change on data; classification or embedding data)")
    scope: Literal["uniform", "global"] = "uniform"
    prune_heads: bool = Field(True, description="remove whole attention heads (at `ratio`) in known attention modules")
    round_to: int | None = Field(None, ge=1, le=1024, description="keep channel counts multiples of this (vector/tensor-core widths)")
    taylor_batches: int = Field(4, ge=1, le=1000, description="training batches (of 64) whose gradients score taylor or fisher importance")
    recalibrate_batches: int = Field(32, ge=0, le=100000, description="training batches used to re-estimate BN statistics")


PruneConfig = Annotated[MagnitudePruneConfig | GlobalPruneConfig | ChannelPruneConfig, Field(discriminator="method")]
"""Any pruning config; validate a mapping with ``parse_prune_config``."""

_ADAPTER: TypeAdapter = TypeAdapter(PruneConfig)
PRUNE_METHODS = ("magnitude", "global", "channel")


def parse_prune_config(options: Any, where: str = "prune options") -> MagnitudePruneConfig | GlobalPruneConfig | ChannelPruneConfig:
    """A typed config from a config object, a mapping (YAML) or a bare method name."""
    if isinstance(options, _PruneBase):
        return options
    if options is None:
        options = {}
    if isinstance(options, str):
        options = {"method": options}
    if not isinstance(options, dict):
        raise ConfigError(f"Invalid {where}: expected a mapping like {{method: channel, ratio: 0.5}}, got {type(options).__name__}.")
    options = {"method": "magnitude", **options}
    if options["method"] not in PRUNE_METHODS:
        raise ConfigError(f"Invalid {where}: method {options['method']!r} is unknown; use one of {', '.join(PRUNE_METHODS)}.")
    try:
        return _ADAPTER.validate_python(options)
    except ValidationError as e:
        error = config_error_from_pydantic(e, where)
        # The union tags each location with the method ("channel.ratio"); users wrote "ratio".
        message = error.message.replace(f": {options['method']}.", ": ").replace(f"; {options['method']}.", "; ")
        raise ConfigError(message) from None
