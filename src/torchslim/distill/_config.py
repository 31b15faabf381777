from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from torchslim.errors import ConfigError, config_error_from_pydantic


class DistillConfig(BaseModel):
    """Knowledge distillation: ``alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(student, labels)``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(5, ge=1, le=10000, description="training epochs of the student")
    temperature: float = Field(4.0, gt=0, le=100, description="softens both distributions; the KL term is scaled by T^2")
    alpha: float = Field(0.7, ge=0, le=1, description="weight of the soft-target KL term; (1 - alpha) weighs the hard-label cross-entropy")
    lr: float = Field(1e-3, gt=0, le=1.0, description="peak learning rate")
    seed: int = 0

    def describe(self) -> str:
        return f"distill(epochs={self.epochs}, temperature={self.temperature:g}, alpha={self.alpha:g})"


def parse_distill_config(options: Any, where: str = "distill options") -> DistillConfig:
    if isinstance(options, DistillConfig):
        return options
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise ConfigError(f"Invalid {where}: expected a mapping like {{epochs: 5, temperature: 4.0, alpha: 0.7}}, got {type(options).__name__}.")
    try:
        return DistillConfig.model_validate(options)
    except ValidationError as e:
        raise config_error_from_pydantic(e, where) from None
