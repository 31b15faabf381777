from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch.utils.data import DataLoader, Dataset

Task = Literal["classification", "embedding"]


@dataclass
class DataBundle:
    """Train / validation / test splits of one data set, plus what a model needs to know.

    ``val`` drives early stopping and selection during training; ``test`` is held out:
    every reported metric is measured on it and no optimization step ever sees it.
    """

    spec: str
    train: Dataset
    val: Dataset
    test: Dataset
    task: Task = "classification"
    num_classes: int | None = None
    input_shape: tuple[int, ...] | None = None  # one sample's shape, for single-tensor inputs
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. the tokenizer for text data

    @property
    def metric(self) -> str:
        return "accuracy" if self.task == "classification" else "fidelity"

    def example_inputs(self, batch_size: int = 2, split: str = "test") -> tuple[torch.Tensor, ...]:
        """A real batch of ``batch_size`` samples (repeated if the split is smaller)."""
        ds = getattr(self, split)
        n = len(ds)
        items = [ds[i % n][0] for i in range(batch_size)]
        first = items[0]
        if isinstance(first, (tuple, list)):
            return tuple(torch.stack([it[j] for it in items]) for j in range(len(first)))
        return (torch.stack(items),)


def as_args(inputs: Any) -> tuple:
    """The positional arguments a model takes for one batch's ``inputs``."""
    if isinstance(inputs, (tuple, list)):
        return tuple(inputs)
    return (inputs,)


def to_device(inputs: Any, device: torch.device | str) -> Any:
    """Move a batch (tensor or nested tuple) to ``device``; async from pinned host memory."""
    device = torch.device(device)
    non_blocking = device.type == "cuda"
    if isinstance(inputs, torch.Tensor):
        return inputs.to(device, non_blocking=non_blocking)
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(to_device(x, device) for x in inputs)
    return inputs


def loader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool = False,
    device: torch.device | str = "cpu",
    seed: int = 0,
    num_workers: int | None = None,
    sampler=None,
    collate_fn=None,
) -> DataLoader:
    """A DataLoader set up for ``device``: pinned memory and workers only where they pay off.

    In-memory tensor data sets gain nothing from worker processes on CPU (each batch is a
    slice), so workers are used only for data sets that decode files (image folders) or when
    feeding a GPU, where overlapping host work with kernels helps.
    """
    is_cuda = torch.device(device).type == "cuda"
    if num_workers is None:
        decodes = not isinstance(dataset, torch.utils.data.TensorDataset)
        num_workers = 2 if (is_cuda or decodes) and len(dataset) > 2048 else 0
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=is_cuda,
        generator=generator,
        persistent_workers=num_workers > 0,
        collate_fn=collate_fn,
    )
