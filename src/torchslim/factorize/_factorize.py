"""``factorize``: low-rank factorization of a model's Linear and Conv layers."""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
from pydantic import BaseModel, ConfigDict, Field, model_validator

from torchslim.errors import ConfigError, UnsupportedError, validate_options
from torchslim.factorize._svd import (
    factorize_layer,
    factorized_cost,
    is_factorizable,
    singular_values,
)


class FactorizeConfig(BaseModel):
    """Options of the ``factorize`` step (recipe: ``factorize: {rank_ratio: 0.5}`` or
    ``{energy: 0.9}``). Give one of ``rank_ratio`` / ``energy``; neither means rank_ratio 0.5."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    rank_ratio: float | None = Field(None, gt=0, le=1, description="kept rank / full rank, in (0, 1]")
    energy: float | None = Field(None, gt=0, le=1, description="kept share of the squared singular values, in (0, 1]")
    finetune_epochs: int = Field(0, ge=0, le=1000, description="epochs of fine-tuning after factorizing (needs data)")
    lr: float = Field(1e-3, gt=0, le=1.0, description="fine-tuning learning rate")
    min_saving: float = Field(0.1, ge=0, lt=1, description="skip a layer unless it saves at least this share of its MACs")
    skip: list[str] = Field(default_factory=list, description="module names or class names to leave alone")
    seed: int = 0

    @model_validator(mode="after")
    def _one_rule(self) -> FactorizeConfig:
        if self.rank_ratio is not None and self.energy is not None:
            raise ValueError("give either rank_ratio or energy, not both")
        return self

    @property
    def rule(self) -> str:
        return f"energy={self.energy}" if self.energy is not None else f"rank_ratio={self.ratio}"

    @property
    def ratio(self) -> float:
        return self.rank_ratio if self.rank_ratio is not None else 0.5


def validate_config(options: dict | FactorizeConfig | None, where: str = "factorize options") -> FactorizeConfig:
    return validate_options(FactorizeConfig, options, where, example="{rank_ratio: 0.5}")


@dataclass
class LayerPlan:
    name: str
    kind: str
    full_rank: int
    rank: int
    energy_kept: float
    cost_before: int  # weights (= MACs per output position)
    cost_after: int
    factorized: bool
    reason: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def _choose_rank(s: torch.Tensor, config: FactorizeConfig) -> int:
    if config.energy is not None:
        cumulative = torch.cumsum(s**2, 0) / (s**2).sum().clamp_min(1e-300)
        return int(torch.searchsorted(cumulative, torch.tensor(config.energy, dtype=cumulative.dtype) - 1e-12)) + 1
    return max(1, math.ceil(config.ratio * len(s)))


def read_elsewhere(model: nn.Module, example_inputs: tuple[torch.Tensor, ...] | None = None) -> dict[str, str]:
    """Factorizable layers another module reads the weight of, -> why. Replacing such a layer by
    two thinner ones breaks the reader (MultiheadAttention reads ``out_proj.weight`` itself) or
    silently unties shared weights. With ``example_inputs``, also the layers whose own forward
    never runs in a call of the model: whatever uses them reads their weights directly."""
    reasons: dict[str, str] = {}
    owners: dict[int, list[str]] = {}
    for name, module in model.named_modules():
        for attr, p in module.named_parameters(recurse=False):
            owners.setdefault(id(p), []).append(f"{name}.{attr}" if name else attr)
        if isinstance(module, nn.MultiheadAttention):
            reasons[f"{name}.out_proj" if name else "out_proj"] = (
                f"nn.MultiheadAttention {name or '(the model)'} reads its weight directly, not through the layer")
        if isinstance(module, nn.TransformerEncoderLayer):  # its inference fast path reads them
            for child in ("linear1", "linear2"):
                reasons[f"{name}.{child}" if name else child] = (
                    f"nn.TransformerEncoderLayer {name or '(the model)'} reads its weight directly in its inference "
                    "fast path")
    for name, module in model.named_modules():
        if is_factorizable(module) and name not in reasons:
            shared = [o for o in owners.get(id(module.weight), []) if o != f"{name}.weight"]
            if shared:
                reasons[name] = f"its weight is tied to {', '.join(shared)}"
    if example_inputs is not None:
        called: set[str] = set()
        layers = {n: m for n, m in model.named_modules() if is_factorizable(m) and n not in reasons}
        hooks = [m.register_forward_pre_hook(lambda _m, _a, n=n: called.add(n)) for n, m in layers.items()]
        training = model.training
        try:  # in eval mode, as deployed
            with torch.no_grad():
                model.eval()(*example_inputs)
        except Exception:  # noqa: BLE001  (a model that fails here fails, with its own error, at the first use)
            called = set(layers)
        finally:
            model.train(training)
            for h in hooks:
                h.remove()
        reasons |= {n: "its forward never runs: the model reads its weight directly" for n in layers if n not in called}
    return reasons


def plan(model: nn.Module, config: FactorizeConfig | dict | None = None,
         example_inputs: tuple[torch.Tensor, ...] | None = None) -> list[LayerPlan]:
    """The rank each Linear/Conv layer would get, and which layers would be skipped and why
    (``read_elsewhere``: layers whose weight another module reads are never factorized)."""
    config = validate_config(config)
    rows = []
    elsewhere = read_elsewhere(model, example_inputs)
    for name, module in model.named_modules():
        if not is_factorizable(module) or name in config.skip or type(module).__name__ in config.skip:
            continue
        s = singular_values(module)
        rank = min(_choose_rank(s, config), len(s))
        before, after = factorized_cost(module, rank)
        kept = float((s[:rank] ** 2).sum() / (s**2).sum().clamp_min(1e-300))
        saving = 1 - after / before
        ok = saving >= config.min_saving and saving > 0 and name not in elsewhere
        reason = ("" if ok else f"left alone: {elsewhere[name]}" if name in elsewhere
                  else f"saves {saving:.0%} of its MACs at rank {rank} (< min_saving {config.min_saving:.0%})")
        rows.append(LayerPlan(name, type(module).__name__, len(s), rank, kept, before, after, ok, reason))
    return rows


def _example(data) -> tuple[torch.Tensor, ...] | None:
    """A batch of 2 from ``data``'s train split, to find the layers whose forward never runs."""
    if data is None or not hasattr(data, "example_inputs"):
        return None
    return data.example_inputs(2, split="train")


def factorize(model: nn.Module, config: FactorizeConfig | dict | None = None, *, data=None,
              device: str | torch.device = "cpu", log=None) -> nn.Module:
    """A copy of ``model`` with each worthwhile Linear/Conv layer replaced by two thinner ones
    (truncated SVD), optionally fine-tuned on ``data`` for ``config.finetune_epochs``."""
    config = validate_config(config)
    if config.finetune_epochs and data is None:
        raise ConfigError("factorize: finetune_epochs > 0 needs data to fine-tune on; pass data=.")
    layers = plan(model, config, _example(data))
    chosen = [p for p in layers if p.factorized]
    if not chosen:
        detail = "; ".join(f"{p.name}: {p.reason}" for p in layers[:5]) or "it has no Linear or Conv layer"
        raise UnsupportedError(
            f"factorize ({config.rule}) would change no layer of {type(model).__name__}: {detail}. "
            "Lower rank_ratio or energy (a square layer only saves compute below rank_ratio 0.5).")
    result = copy.deepcopy(model)
    with torch.no_grad():
        for p in chosen:
            parent_name, _, child = p.name.rpartition(".")
            parent = result.get_submodule(parent_name) if parent_name else result
            setattr(parent, child, factorize_layer(getattr(parent, child), p.rank))
    if log:
        before = sum(p.cost_before for p in chosen)
        after = sum(p.cost_after for p in chosen)
        log(f"factorize: {len(chosen)}/{len(layers)} layers, their weights {before:,} -> {after:,}")
    if config.finetune_epochs:
        from torchslim.train import TrainConfig, fit

        fit(result, data, TrainConfig(epochs=config.finetune_epochs, lr=config.lr, seed=config.seed), device=device)
    return result.eval()
