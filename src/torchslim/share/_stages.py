"""Deep compression stage by stage, each stage written to disk and measured.

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

from torchslim.share._share import ShareConfig, share
from torchslim.share._sparsify import magnitude_prune
from torchslim.share._tslim import load_tslim, save_tslim, tslim_info


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
    from torchslim.bench import accuracy

    out_dir = Path(out_dir)
    stage_dir = out_dir / "stages"
    stage_dir.mkdir(parents=True, exist_ok=True)
    example = tuple(t.cpu() for t in data.example_inputs(2))
    fp32_path = stage_dir / "fp32_state_dict.pt"
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    torch.save(state, fp32_path)
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
