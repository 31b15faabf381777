"""Static int8 (PTQ) and quantization-aware training through PT2E with ``X86InductorQuantizer``.

The result is an exported ``GraphModule`` with int8 weights folded in (``fold_quantize=True``)
and quantize/dequantize nodes around each conv/linear. Run eagerly those nodes are a
reference implementation (slower than fp32); inductor with ``freezing=True`` pattern-matches
them into oneDNN int8 kernels, which is where the speed-up comes from (runtime ``compile``).
"""

from __future__ import annotations

import copy
import warnings

import torch
import torch.nn as nn

from torchslim.core.export import export_program, model_max_length
from torchslim.errors import ConfigError, UnsupportedError
from torchslim.quantize._common import QuantizeInputs, SkipList, calibration, quiet_backends
from torchslim.quantize._config import QATConfig, StaticInt8Config


def _quantizer(config, model: nn.Module, *, is_qat: bool, extra_skip: tuple[str, ...] = ()):
    with quiet_backends():
        import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq

    quantizer = xiq.X86InductorQuantizer()
    quantizer.set_global(xiq.get_default_x86_inductor_quantization_config(is_qat=is_qat))
    skip = SkipList(config.skip, model)
    # The quantizer finds modules by the nn_module_stack metadata export keeps on each node;
    # class entries are given as the names of their instances (SkipList resolves them).
    for name in sorted(skip.names | set(extra_skip)):
        quantizer.set_module_name_qconfig(name, None)
    return quantizer


def _split_attention(model: nn.Module, config) -> None:
    """MultiheadAttention as plain Linears (``_attention``), so the quantizer annotates all four
    projections, not only the ones exported as linear ops; ``model`` is the verb's private copy."""
    from torchslim.quantize._attention import split_attention_

    if split := split_attention_(model, SkipList(config.skip, model).skips):
        model.torchslim_split_attention = split


def _export_for_pt2e(model: nn.Module, example: tuple[torch.Tensor, ...], *, train: bool) -> torch.fx.GraphModule:
    """The graph PT2E annotates: ``torchslim.core.export`` (dynamic batch, and sequence for
    token inputs), in training or eval mode."""
    model.train(train)
    program = export_program(model, example, what="PT2E quantization needs torch.export, which",
                             advice="Or use method 'dynamic' or 'bf16', which work on the eager module.")
    graph = program.module()
    _one_partition_per_call(graph, model)
    return graph


def _one_partition_per_call(graph: torch.fx.GraphModule, model: nn.Module) -> None:
    """Give each call of a reused stateless module its own source partition.

    Users reuse stateless modules (one ``self.act = nn.Hardswish()`` called twice in a block).
    The quantizer groups nodes into partitions by the module path they came from (the node's
    ``nn_module_stack`` in a non-strict export), so both calls became one partition with two outputs
    and X86InductorQuantizer stopped with "Input partition has more than one output node". A
    call's nodes are contiguous in the graph: a path that comes back after another module's
    nodes is a new call, and its nodes get the path with a ``__callN`` suffix. Only metadata of
    parameter-free modules changes (layer names that skip lists and fallback use are left as
    they are), never the computation.
    """
    calls: dict[str, int] = {}
    previous = None
    for node in graph.graph.nodes:
        stack = node.meta.get("nn_module_stack")
        if node.op != "call_function" or not stack:
            continue
        key, (fqn, cls) = list(stack.items())[-1]
        if fqn != previous:
            calls[fqn] = calls.get(fqn, 0) + 1
        previous = fqn
        if calls[fqn] == 1 or not _stateless(model, fqn):
            continue
        renamed = f"{fqn}__call{calls[fqn]}"
        node.meta["nn_module_stack"] = {**stack, key: (renamed, cls)}


def _stateless(model: nn.Module, fqn: str) -> bool:
    try:
        module = model.get_submodule(fqn)
    except AttributeError:  # not a module path of this model: leave its metadata alone
        return False
    return next(module.parameters(), None) is None


def _check_quantized(converted: torch.fx.GraphModule, config) -> None:
    """A PT2E pass that matched no conv/linear leaves a float graph: say so, don't pretend."""
    if not any("quantize_per" in str(node.target) for node in converted.graph.nodes):
        raise ConfigError(
            f"quantize method {config.method!r} found nothing to quantize: X86InductorQuantizer "
            f"annotates convolutions and linear layers{', and the skip list ' + repr(list(config.skip)) + ' excluded all of them' if config.skip else ''}. "
            "Shorten the skip list, or use 'bf16' for models without such layers."
        )


def _finish(converted: torch.fx.GraphModule, model: nn.Module) -> torch.fx.GraphModule:
    """Eval mode, ``.eval()`` allowed, and the float weights that ``convert_pt2e`` replaced by
    folded int8 constants dropped: they stay attached to the module otherwise, and a
    re-export would save them too (the artifact came out larger than the fp32 one)."""
    from torchao.quantization.pt2e import (
        allow_exported_model_train_eval,
        move_exported_model_to_eval,
    )

    move_exported_model_to_eval(converted)
    allow_exported_model_train_eval(converted)
    converted.graph.eliminate_dead_code()
    converted.recompile()
    used = {node.target for node in converted.graph.nodes if node.op == "get_attr"}
    for name, _ in list(converted.named_parameters()) + list(converted.named_buffers()):
        if name not in used:
            owner, _, attr = name.rpartition(".")
            delattr(converted.get_submodule(owner) if owner else converted, attr)
    converted.delete_all_unused_submodules()
    # The float model's sequence limit (e.g. max_position_embeddings) kept on the graph, so
    # re-exporting the quantized graph accepts the same lengths (torchslim.core.export).
    limit = model_max_length(model)
    if limit is not None:
        converted.max_length = limit
    return converted


def _check_cpu(device: torch.device, method: str) -> None:
    if device.type != "cpu":
        raise UnsupportedError(
            f"quantize method {method!r} uses X86InductorQuantizer, whose int8 kernels are x86 CPU "
            f"(oneDNN) kernels; it cannot target {device}. Quantize on device='cpu', or use "
            "'dynamic'/'weight-only' (torchao) or 'bf16'/'fp16' on GPU."
        )


@torch.no_grad()
def _copy_graph(graph: torch.fx.GraphModule) -> torch.fx.GraphModule:
    # Deep-copying an exported GraphModule rebuilds its pytree specs through torch's deprecated
    # LeafSpec constructor, which prints a FutureWarning in the middle of the progress lines;
    # the copy itself is correct, and nothing on our side can call it differently.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*treespec, LeafSpec.*", category=FutureWarning)
        return copy.deepcopy(graph)


def quantize_static(model: nn.Module, config: StaticInt8Config, inputs: QuantizeInputs) -> nn.Module:
    _check_cpu(inputs.device, "static")
    _split_attention(model, config)
    batches = calibration(inputs, config)
    smoothed = None
    if config.smoothquant is not None:  # ``model`` is the verb's private copy: smoothing it is safe
        from torchslim.quantize._smooth import smooth_

        smoothed = smooth_(model.eval(), inputs.example_inputs, batches, config.smoothquant)
    graph = _export_for_pt2e(model.eval(), inputs.example_inputs, train=False)

    def convert(kept_in_float: tuple[str, ...]) -> torch.fx.GraphModule:
        # Each try prepares a fresh copy of the one exported graph (prepare_pt2e mutates it).
        return _convert_static(_copy_graph(graph), model, config, kept_in_float, batches)

    if config.fallback is None:
        converted = convert(())
    else:
        converted = _with_fallback(model, config, inputs, convert)
    inputs.record.smoothquant = smoothed
    return converted


def _convert_static(graph, model, config, kept_in_float, batches) -> torch.fx.GraphModule:
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = _quantizer(config, model, is_qat=False, extra_skip=kept_in_float)
    with quiet_backends():
        prepared = prepare_pt2e(graph, quantizer)
        for args in batches:
            prepared(*args)
        converted = convert_pt2e(prepared, fold_quantize=True)
    _check_quantized(converted, config)
    return _finish(converted, model)


def _with_fallback(model, config: StaticInt8Config, inputs: QuantizeInputs, convert) -> torch.fx.GraphModule:
    """``fallback: auto``: the measured loop of ``torchslim.quantize._fallback``; the record goes
    to ``inputs.record.fallback`` (the recipe step turns it into notes and the report's field)."""
    from torchslim.quantize._fallback import measured_fallback, quantizable_layers

    if inputs.data is None or len(inputs.data.val) == 0:
        raise ConfigError("quantize fallback: auto measures the metric on the validation split: pass "
                          "data=DataBundle with a non-empty val split, or set fallback: null.")
    say = inputs.log if callable(inputs.log) else (lambda _m: None)
    layers = quantizable_layers(model, SkipList(config.skip, model))

    def quantize_with(kept_in_float: tuple[str, ...]):
        converted = convert(kept_in_float)
        return converted, converted

    result, converted = measured_fallback(model, model, layers, inputs.data, quantize_with, device=inputs.device,
                                          target_drop=config.fallback_target_drop,
                                          max_layers=config.fallback_max_layers, log=say)
    inputs.record.fallback = result
    return converted


def quantize_qat(model: nn.Module, config: QATConfig, inputs: QuantizeInputs) -> nn.Module:
    from torchao.quantization.pt2e import allow_exported_model_train_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_qat_pt2e

    from torchslim.train import TrainConfig, fit

    _check_cpu(inputs.device, "qat")
    _split_attention(model, config)
    batches = calibration(inputs, config)
    quantizer = _quantizer(config, model, is_qat=True)
    # Exported in training mode so conv+batch-norm stay separate and QAT can fold them itself.
    graph = _export_for_pt2e(model, inputs.example_inputs, train=True)
    with quiet_backends():
        prepared = prepare_qat_pt2e(graph, quantizer)
        # fit() calls .train()/.eval(); exported graphs need them mapped to their own switch.
        allow_exported_model_train_eval(prepared)
        with torch.no_grad():
            prepared.eval()
            for args in batches:  # observers start from real ranges, not from the first step
                prepared(*args)
        log = inputs.log if callable(inputs.log) else None
        fit(prepared, inputs.data, TrainConfig(epochs=config.epochs, lr=config.lr, seed=inputs.seed),
            device=inputs.device, log=log)
        prepared.eval()
        with torch.no_grad():
            converted = convert_pt2e(prepared, fold_quantize=True)
    _check_quantized(converted, config)
    return _finish(converted, model)
