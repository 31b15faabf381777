from __future__ import annotations

import torch
import torch.nn as nn

# Buffers that are statistics, not weights: they are not counted as parameters.
_STAT_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def count_params(module: nn.Module) -> int:
    """Parameters plus weight tensors held as buffers or constants (quantized and exported
    graphs keep their weights that way), excluding batch-norm statistics."""
    seen: set[int] = set()
    total = 0
    tensors = list(module.named_parameters()) + list(module.named_buffers())
    if isinstance(module, torch.fx.GraphModule):
        for node in module.graph.nodes:
            if node.op == "get_attr":
                obj = module
                for part in node.target.split("."):
                    obj = getattr(obj, part, None)
                if isinstance(obj, torch.Tensor):
                    tensors.append((node.target, obj))
    for name, t in tensors:
        if name.rsplit(".", 1)[-1] in _STAT_BUFFERS or id(t) in seen:
            continue
        seen.add(id(t))
        total += t.numel()
    return total


def count_macs(module: nn.Module, example_inputs: tuple) -> int | None:
    """Multiply-accumulates of one forward pass, from torch's FLOP counter (FLOPs / 2).

    Returns None where the counter cannot see the work (compiled or foreign runtimes).
    """
    from torch.utils.flop_counter import FlopCounterMode

    # In eval mode without grad, nn.MultiheadAttention and nn.TransformerEncoderLayer take their
    # fused "fast path" (one native op per layer), which the FLOP counter does not know: a
    # 2-layer encoder counted 0 MACs. The fast path is off while counting; the work is the same.
    fastpath = torch.backends.mha.get_fastpath_enabled()
    try:
        torch.backends.mha.set_fastpath_enabled(False)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            module(*example_inputs)
        return int(counter.get_total_flops() // 2)
    except Exception:
        return None
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
