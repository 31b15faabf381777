"""``Performance(model)``: the class of seeds/000 ("Performance Optimization"), as a thin facade.

Code written against that document runs unchanged::

    perf = Performance(model)
    perf.gpu_acceleration()                          # model on CUDA when there is one
    data, target = perf.distributed_training(data, target)
    small = perf.model_quantization()                # dynamic int8, a new model
    perf.model_pruning(amount=0.5)                   # L1, global, permanent, in place

without the document's bugs: pruning takes the Conv/Linear layers the model really has (not
hard-coded ``conv1``/``fc2``), ``distributed_training`` uses DistributedDataParallel when the
process group is up (DataParallel only for several GPUs in one process) and defines the
device it moves to, and quantization goes through torchslim's quantize step.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import torch
import torch.nn as nn

from torchslim.core.log import say
from torchslim.errors import ConfigError, UnsupportedError
from torchslim.prune import prunable_layers


class Performance:
    """Device placement, data parallelism, quantization and pruning for one model."""

    def __init__(self, model: nn.Module, *, example_inputs: tuple[torch.Tensor, ...] | None = None) -> None:
        if not isinstance(model, nn.Module):
            raise ConfigError(f"Performance(model) needs a torch.nn.Module, got {type(model).__name__}.")
        self.model = model
        self.example_inputs = example_inputs
        param = next(model.parameters(), None)
        self.device = param.device if param is not None else torch.device("cpu")

    def gpu_acceleration(self) -> torch.device:
        """Move the model to CUDA when available; returns the device it is on."""
        if torch.cuda.is_available():
            self.device = torch.device("cuda", torch.cuda.current_device())
            self.model = self.model.to(self.device)
        else:
            say("gpu_acceleration: no CUDA device on this machine; the model stays on the CPU")
        return self.device

    def distributed_training(self, data: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Wrap the model for data parallelism and move ``data``/``target`` to its device.

        DistributedDataParallel when ``torch.distributed`` is initialized with more than one
        process (one process per device: the fast, recommended path); ``nn.DataParallel``
        only for several GPUs in a single process; otherwise the plain model.
        """
        from torch.nn.parallel import DistributedDataParallel

        inner = self.model.module if isinstance(self.model, (DistributedDataParallel, nn.DataParallel)) else self.model
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            if not isinstance(self.model, DistributedDataParallel):
                inner = inner.to(self.device)
                device_ids = [self.device.index if self.device.index is not None else torch.cuda.current_device()] \
                    if self.device.type == "cuda" else None
                self.model = DistributedDataParallel(inner, device_ids=device_ids)
        elif self.device.type == "cuda" and torch.cuda.device_count() > 1:
            if not isinstance(self.model, nn.DataParallel):
                self.model = nn.DataParallel(inner.to(self.device))
        self.model = self.model.to(self.device)
        return data.to(self.device), target.to(self.device)

    def model_quantization(self, method: str = "dynamic") -> nn.Module:
        """A quantized copy of the model (dynamic int8 by default) via torchslim's quantize step;
        the model held by this object is left as it is."""
        from torchslim.core.step import StepContext
        from torchslim.quantize import run_step, validate_step

        config = validate_step({"method": method})
        model = self._unwrapped()
        example = self.example_inputs
        if example is None and callable(getattr(model, "example_inputs", None)):
            example = model.example_inputs(2)
        with tempfile.TemporaryDirectory(prefix="torchslim-performance-") as tmp:
            # Dynamic quantization needs no data; static/QAT would, and say so through the step.
            ctx = StepContext(data=None, device=self.device, teacher=model, work_dir=Path(tmp),
                              example_inputs=tuple(example or ()), log=say)
            out = run_step(copy.deepcopy(model).eval(), config, ctx)
        return out.model

    def model_pruning(self, amount: float = 0.5) -> nn.Module:
        """Zero the ``amount`` fraction of smallest-|w| weights across every Conv/Linear layer
        (global L1, so sensitive layers keep more), made permanent; returns the model.

        Unstructured zeros shrink a compressed artifact, not latency: dense kernels still run them.
        """
        from torch.nn.utils import prune

        if not isinstance(amount, (int, float)) or not 0.0 <= amount <= 1.0:
            raise ConfigError(f"model_pruning(amount={amount!r}): amount is the fraction of weights to zero, between 0 and 1.")
        layers = list(prunable_layers(self._unwrapped()).items())
        if not layers:
            raise UnsupportedError(f"model_pruning: {type(self._unwrapped()).__name__} has no Conv or Linear layer to prune.")
        targets = [(module, "weight") for _, module in layers]
        prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=float(amount))
        for module, name in targets:
            prune.remove(module, name)  # bake the mask in: no hooks, no weight_orig left behind
        return self.model

    def _unwrapped(self) -> nn.Module:
        from torch.nn.parallel import DistributedDataParallel

        return self.model.module if isinstance(self.model, (DistributedDataParallel, nn.DataParallel)) else self.model


__all__ = ["Performance"]
