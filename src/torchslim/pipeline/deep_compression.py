"""Deep Compression stage by stage (prune -> share -> Huffman), each stage written to disk
and measured. It composes three techniques (``torchslim.prune``, ``torchslim.share`` and
its .tslim encoder), so it lives above them, in the pipeline layer.


    fp32      the dense state_dict (torch.save): the size everything is compared with
    pruned    magnitude-pruned, written as .tslim with fixed-width codes (sparse gaps + fp32 values)
    shared    weight-shared, .tslim with fixed-width codes (codebook indices + gaps)
    huffman   the same model, .tslim with Huffman codes: the deliverable

Bits per weight come from each file's parameter sections (real bytes); accuracy of the last
row is measured on the model *loaded back* from the .tslim file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn

from torchslim.core.files import atomic_write_buffered
from torchslim.data import accuracy
from torchslim.errors import ConfigError
from torchslim.prune import MagnitudePruneConfig, prune, zero_fraction
from torchslim.share import ShareConfig, load_tslim, save_tslim, share, tslim_info


@dataclass
class StageRow:
    stage: str
    accuracy: float
    bits_per_weight: float
    size_bytes: int
    smaller_than_fp32: float
    file: str

    def to_dict(self) -> dict:
        return asdict(self)


def deep_compress(
    model: nn.Module,
    data,
    out_dir: str | Path,
    *,
    share_config: ShareConfig,
    prune_ratio: float | dict[str, float] = 0.0,
    prune_steps: int = 1,
    prune_finetune_epochs: int = 0,
    prune_lr: float = 3e-3,
    device: str | torch.device = "cpu",
    seed: int = 0,
    log: Callable[[str], None] = lambda _m: None,
) -> tuple[list[StageRow], Path, nn.Module]:
    """Prune (optional) -> share -> Huffman; returns the stage table, the .tslim path and the
    model loaded back from it."""
    out_dir = Path(out_dir)
    stage_dir = out_dir / "stages"
    stage_dir.mkdir(parents=True, exist_ok=True)
    example = tuple(t.cpu() for t in data.example_inputs(2))
    fp32_path = stage_dir / "fp32_state_dict.pt"
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_buffered(fp32_path, lambda f: torch.save(state, f))  # a full disk: exit 2, not an abort
    fp32_size = fp32_path.stat().st_size
    rows = [StageRow("fp32", accuracy(model, data.test, device=device), 32.0, fp32_size, 1.0, str(fp32_path))]

    def add(stage: str, m: nn.Module, path: Path, acc_model: nn.Module | None = None) -> None:
        info = tslim_info(path)
        acc = accuracy(acc_model or m, data.test, device=device)
        rows.append(StageRow(stage, acc, round(info["parameter_bits_per_weight"], 4), info["file_bytes"],
                             round(fp32_size / info["file_bytes"], 2), str(path)))
        log(f"{stage}: accuracy {acc:.4f}, {info['file_bytes']:,} B on disk")

    current = model
    if prune_ratio:
        log("magnitude pruning" + (f" with {prune_finetune_epochs} fine-tuning epochs per step" if prune_finetune_epochs else ""))
        current = magnitude_prune(model, prune_ratio, data=data, finetune_epochs=prune_finetune_epochs,
                                  steps=prune_steps, lr=prune_lr, device=device, seed=seed)
        add("pruned", current, save_tslim(current, stage_dir / "pruned-fixed.tslim", example_inputs=example, coding="fixed"))
    log(f"sharing weights ({2 ** share_config.bits} values per layer)")
    current = share(current, share_config, data=data, device=device)
    add("shared", current, save_tslim(current, stage_dir / "shared-fixed.tslim", example_inputs=example, coding="fixed"))
    final = save_tslim(current, out_dir / "model.tslim", example_inputs=example, task=data.task,
                       steps=[f"share(bits={share_config.bits})", "encode(huffman)"])
    loaded = load_tslim(final, device=device)
    add("huffman", current, final, acc_model=loaded)
    return rows, final, loaded


def magnitude_prune(
    model: nn.Module,
    ratio: float | dict[str, float],
    *,
    data=None,
    finetune_epochs: int = 0,
    steps: int = 1,
    lr: float = 3e-3,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> nn.Module:
    """A copy of ``model`` with the smallest ``ratio`` of each Linear/Conv weight set to zero
    (``ratio`` may map layer names to their own ratio), fine-tuned ``finetune_epochs`` per step."""
    per_layer = ratio if isinstance(ratio, dict) else {}
    base = 0.0 if per_layer else ratio
    if per_layer and not any(per_layer.values()) or not per_layer and not base:
        raise ConfigError("magnitude prune: every ratio is 0, so it would change nothing.")
    config = MagnitudePruneConfig(ratio=base, layer_ratios=per_layer, iterations=steps,
                                  finetune_epochs=finetune_epochs, finetune_lr=lr)
    pruned = prune(model, config, data=data, device=device, seed=seed)
    with torch.no_grad():
        for module in pruned.modules():
            if isinstance(getattr(module, "weight", None), torch.Tensor):
                module.weight.add_(0.0)  # weight * mask leaves -0.0; -0.0 + 0.0 is +0.0
    return pruned


def sparsity(model: nn.Module) -> float:
    """Share of exactly-zero values among the Linear/Conv weights."""
    return zero_fraction(model)
