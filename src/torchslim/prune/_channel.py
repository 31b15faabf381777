"""Structured channel pruning with Torch-Pruning's dependency graph.

Torch-Pruning traces the model once and groups every parameter slice that must go
together when one channel goes: the conv, its BN, the next layer's input channels, both
sides of a residual add, concatenations, depthwise convs, LayerNorms. We only choose
*policy*: importance (L1/L2 norm, first-order Taylor, or the Fisher score of
removing each head/neuron, ``_fisher.py``), scope (each layer at the same
ratio, or one global ranking), the schedule, and what is never pruned (the classifier's
outputs, user-named modules). Channels are physically removed: the result is an
ordinary, smaller ``nn.Module`` of the same classes.

Attention: the zoo's ``SelfAttention`` (q/k/v + ``heads``) and Hugging Face self-attention
(query/key/value + ``num_attention_heads``) are registered with their head counts, so
Torch-Pruning removes whole heads consistently from q, k, v and the output projection's
inputs (``prune_heads``, the default) — or, with heads kept, the same number of dimensions
from every head. Their reshape attributes are updated after each step (``_attention.py``).
A Hugging Face model keeps its hidden size: only heads and FFN neurons shrink.
"""

from __future__ import annotations

import itertools
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

from torchslim.data import as_args, loader, to_device
from torchslim.errors import ConfigError, UnsupportedError
from torchslim.prune._attention import (
    attention_modules,
    check_widths_kept,
    head_count,
    head_ratio_for_step,
    hidden_width_layers,
    kept_widths,
)
from torchslim.prune._config import ChannelPruneConfig
from torchslim.prune._fisher import FisherImportance
from torchslim.prune._layers import (
    RunContext,
    check_module_names,
    output_layer_names,
    prunable_layers,
)
from torchslim.train import finetune
from torchslim.train.batchnorm import recalibrate_batchnorm


def prune_channels(model: nn.Module, config: ChannelPruneConfig, ctx) -> nn.Module:
    """Prune ``model`` in place (the caller passes a copy) and return it."""
    _check_inputs(model, config, ctx)
    attention = attention_modules(model)
    widths = kept_widths(model, hidden_width_layers(model, attention))
    pruner = _make_pruner(model, config, ctx, attention)
    before, heads_before = _param_count(model), head_count(model)
    expected_shape = _output_shape(model, ctx.example_inputs)
    for round_index in range(1, config.iterations + 1):
        _prune_round(model, config, ctx, pruner, attention, round_index)
        _check_still_runs(model, ctx.example_inputs, expected_shape)
        check_widths_kept(model, widths)
        if ctx.data is not None:
            recalibrate_batchnorm(model, ctx.data.train, device=ctx.device, batches=config.recalibrate_batches, seed=ctx.seed)
        heads = f", {head_count(model)} attention heads (from {heads_before})" if heads_before else ""
        ctx.log(f"channel prune round {round_index}/{config.iterations}: {_param_count(model):,} parameters (from {before:,}){heads}")
        if config.finetune_epochs > 0:
            finetune(model, ctx.data, epochs=config.finetune_epochs, lr=config.finetune_lr, device=ctx.device,
                     seed=ctx.seed, teacher=ctx.teacher, log=ctx.log, hidden_states=config.finetune_hidden_states)
    if config.ratio > 0 and _param_count(model) >= before:
        raise ConfigError(_nothing_removed(model, config))
    return model.eval()


def _nothing_removed(model: nn.Module, config: ChannelPruneConfig) -> str:
    """Why no channel went: the layers kept whole (recurrent, tied, other-width attention) by name,
    since with those the message is about the model, not the ignore list."""
    from torchslim.prune._blocks import customized_pruners, unprunable_attention

    kept = {id(m) for m in customized_pruners(model, True)[2] + unprunable_attention(model)}
    whole = [f"{name!r} ({type(m).__name__})" for name, m in model.named_modules() if name and id(m) in kept]
    reason = (f"every prunable group reaches a layer channel pruning keeps whole ({', '.join(whole)}: recurrent "
              "layers, tied weights and attention with other-width keys are never cut), the classifier or an ignored "
              f"layer (ignore={config.ignore})") if whole else (
              f"every prunable group is ignored or coupled to the classifier (ignore={config.ignore})")
    way_out = "Use method: magnitude or global for this model" + (", or ignore fewer layers" if config.ignore else "")
    return (f"prune: channel pruning at ratio {config.ratio} removed nothing from {type(model).__name__}: {reason}. "
            f"{way_out}.")


def _check_inputs(model: nn.Module, config: ChannelPruneConfig, ctx) -> None:
    if config.importance in ("taylor", "fisher") and ctx.data is None:
        raise ConfigError(f"prune.importance: {config.importance} scores channels with gradients on training data and "
                          "needs data=; use l1 or l2 without data.")
    if config.importance == "taylor" and ctx.data.task != "classification":
        raise ConfigError(f"prune.importance: taylor scores channels with gradients of the classification loss, and "
                          f"{ctx.data.spec!r} is {ctx.data.task} data without labels; use fisher (or l1, l2).")
    if config.finetune_epochs > 0 and ctx.data is None:
        raise ConfigError("prune.finetune_epochs > 0 needs training data: pass data= (or finetune_epochs: 0).")
    layers = prunable_layers(model)
    if not layers:
        raise ConfigError(f"prune: {type(model).__name__} has no Linear or Conv layers, so it has no channels to prune.")
    check_module_names(model, config.ignore, "prune.ignore")
    check_module_names(model, list(config.layer_ratios), "prune.layer_ratios", allowed=layers)


def _make_pruner(model: nn.Module, config: ChannelPruneConfig, ctx, attention):
    """Torch-Pruning's pruner: the classifier, ignored layers and the residual width are kept."""
    import torch_pruning as tp

    from torchslim.prune._blocks import customized_pruners, traced_as_one_node, unprunable_attention

    modules = dict(model.named_modules())
    keep = output_layer_names(model, ctx.example_inputs) + list(config.ignore)
    num_heads = {proj: att.heads for att in attention for proj in att.projections}
    hidden = hidden_width_layers(model, attention)
    pruners, recurrent, frozen = customized_pruners(model, whole_heads=config.prune_heads)
    names = {m: n for n, m in model.named_modules()}
    kept = [f"{names[m]} ({type(m).__name__})" for m in frozen + unprunable_attention(model)]
    if kept:
        ctx.log(f"channel prune: kept whole (recurrent, tied weights, keys/values of another width): {', '.join(kept)}")
    # Traced as one node each: recurrent layers (Torch-Pruning cannot follow their kernels) and
    # MultiheadAttention (its handler prunes it whole; its insides, e.g. add_zero_attn's concat,
    # confuse the tracer).
    opaque = recurrent + [m for m in model.modules() if isinstance(m, nn.MultiheadAttention)]
    with warnings.catch_warnings(), traced_as_one_node(opaque):
        # Torch-Pruning warns about parameters held outside leaf modules (a transformer's
        # position embedding); it prunes their last dimension, which is the right one here.
        warnings.simplefilter("ignore", UserWarning)
        pruner = _guarded(model, tp.pruner.BasePruner,
            model,
            ctx.example_inputs,
            importance=_importance(config, attention),
            global_pruning=config.scope == "global",
            pruning_ratio=config.ratio,
            pruning_ratio_dict=_ratios(model, config),
            iterative_steps=config.iterations,
            ignored_layers=[modules[n] for n in keep] + hidden + frozen + unprunable_attention(model),
            customized_pruners=pruners,
            round_to=config.round_to,
            num_heads=num_heads,
            prune_num_heads=bool(num_heads) and config.prune_heads,
            prune_head_dims=not config.prune_heads,
            head_pruning_ratio=config.ratio if config.prune_heads else 0.0,
        )
    pruner.torchslim_frozen = frozen  # groups reaching these (as inputs too) are skipped, see _step_groups
    return pruner


def _ratios(model: nn.Module, config: ChannelPruneConfig) -> dict[nn.Module, float]:
    """Torch-Pruning's ``pruning_ratio_dict``: ``layer_ratios``, and with uniform scope every
    layer at ``ratio`` too. That gives each group its own ranking scope: Torch-Pruning 1.6 names
    a local scope after the group's root layer, and an attention group re-rooted at its output
    projection takes the name of the residual group rooted there, which then is never pruned
    (a hand-written attention block's residual width stayed whole)."""
    modules = dict(model.named_modules())
    ratios = {} if config.scope == "global" else {m: config.ratio for m in prunable_layers(model).values()}
    return ratios | {modules[n]: r for n, r in config.layer_ratios.items()}


def _prune_round(model: nn.Module, config: ChannelPruneConfig, ctx, pruner, attention, round_index: int) -> None:
    if config.importance == "taylor":
        _accumulate_gradients(model, ctx, batches=config.taylor_batches)
    if config.importance == "fisher":
        batches = loader(ctx.data.train, 64, shuffle=True, device=ctx.device, seed=ctx.seed + round_index,
                         collate_fn=getattr(ctx.data.train, "training_collate", None))
        # A small training split is passed over again (reshuffled): more samples of the random directions.
        repeated = itertools.chain.from_iterable(itertools.repeat(batches, config.taylor_batches))
        pruner.importance.collect(model, itertools.islice(repeated, config.taylor_batches), ctx.data.task,
                                  device=ctx.device, seed=ctx.seed)
    if config.prune_heads and config.scope == "uniform":
        for att in attention:  # Torch-Pruning reads it per q/k/v projection at this step
            ratio = head_ratio_for_step(att, config.ratio, config.iterations, round_index)
            pruner.head_pruning_ratio_dict.update({p: [ratio] * (config.iterations + 1) for p in att.projections})
    _guarded(model, _step_groups, pruner, config.prune_heads)
    model.zero_grad(set_to_none=True)
    for att in attention:
        heads = pruner.num_heads.get(att.projections[0], att.heads)
        if heads < 1:  # only the global ranking can do this; uniform keeps at least one head
            name = next(n for n, m in model.named_modules() if m is att.module)
            raise UnsupportedError(f"prune: the global ranking removed every attention head of {name!r} at ratio "
                                   f"{config.ratio}. Use a lower ratio, scope: uniform, or prune_heads: false.")
        att.sync(heads)


def _step_groups(pruner, whole_heads: bool) -> None:
    """One pruner step, group by group: a group that reaches a frozen layer (a GRU's input
    width) is left alone, and a group through ``nn.MultiheadAttention`` removes a multiple
    of the head size (whole heads) or of the head count (per-head dimensions), rounded to
    the nearest one, keeping one head (or one dimension per head)."""
    frozen = set(pruner.torchslim_frozen)
    for group in pruner.step(interactive=True):
        if any(dep.target.module in frozen for dep, _ in group):
            continue
        idxs = _fit_to_attention(pruner, group, whole_heads)
        if idxs:
            group.prune(idxs)


def _fit_to_attention(pruner, group, whole_heads: bool) -> list[int]:
    from torchslim.prune._blocks import heads_multiple

    idxs = [int(i) for i in group[0].idxs]
    attention = list({id(dep.target.module): dep.target.module for dep, _ in group
                      if isinstance(dep.target.module, nn.MultiheadAttention)}.values())
    if not attention:
        return idxs
    step, width = heads_multiple(attention, whole_heads), attention[0].embed_dim
    count = min(round(len(idxs) / step) * step, width - step)
    if count == len(idxs) or count <= 0:
        return idxs if count == len(idxs) else []
    # Re-rank the whole residual group to take exactly `count` channels (Torch-Pruning chose len(idxs)).
    root, handler = group[0].dep.target.module, group[0].dep.handler
    channels = (pruner.DG.get_out_channels if pruner.DG.is_out_channel_pruning_fn(handler) else pruner.DG.get_in_channels)(root)
    importance = pruner.estimate_importance(pruner.DG.get_pruning_group(root, handler, list(range(channels))))
    if importance is None:
        return idxs[:count]
    return torch.argsort(importance)[:count].tolist()


def _guarded(model: nn.Module, call, *args, **kwargs):
    """Torch-Pruning's own failures (a reshape it cannot follow) as a clear UnsupportedError."""
    try:
        return call(*args, **kwargs)
    except UnsupportedError:
        raise  # ours (fisher importance's), already clear
    except Exception as e:
        raise UnsupportedError(
            f"Torch-Pruning could not prune {type(model).__name__} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). "
            "Modules with hard-coded widths (a fixed reshape, an attention head size) cannot be pruned "
            "consistently; list them under prune.ignore, or use method: magnitude."
        ) from None


def _output_shape(model: nn.Module, example_inputs: tuple) -> tuple:
    with torch.no_grad():
        out = model(*example_inputs)
    return tuple((out[0] if isinstance(out, (tuple, list)) else out).shape)


def _check_still_runs(model: nn.Module, example_inputs: tuple, expected_shape: tuple) -> None:
    """Fail loudly, naming the module, if pruning left a layer whose hard-coded sizes no longer
    fit (an attention module we do not recognize, a reshape to a fixed width)."""
    entered: list[str] = []  # modules whose forward started and has not returned: the last one raised

    def leave(*_args) -> None:  # returns None: the output is left as it is
        entered.pop()

    hooks = []
    for name, module in model.named_modules():
        hooks.append(module.register_forward_pre_hook(lambda *_a, n=name: entered.append(n)))
        hooks.append(module.register_forward_hook(leave))
    try:
        shape = _output_shape(model, example_inputs)
    except Exception as e:
        where = next((n for n in reversed(entered) if n), "")
        block = f"{where!r} ({type(model.get_submodule(where)).__name__})" if where else type(model).__name__
        raise UnsupportedError(
            f"Channel pruning left {type(model).__name__} unable to run: {block} failed with {type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}. It probably reshapes to a fixed width (e.g. an attention "
            f"head size torchslim does not recognize); list it under prune.ignore, or use method: magnitude."
        ) from None
    finally:
        for hook in hooks:
            hook.remove()
    if shape != expected_shape:
        raise UnsupportedError(f"Channel pruning changed the output shape from {expected_shape} to {shape}; list the output layers under prune.ignore.")


def _importance(config: ChannelPruneConfig, attention):
    import torch_pruning as tp

    if config.importance == "fisher":
        return FisherImportance(attention, whole_heads=config.prune_heads)
    if config.importance == "taylor":
        return tp.importance.TaylorImportance()
    return tp.importance.MagnitudeImportance(p=1 if config.importance == "l1" else 2)


def _accumulate_gradients(model: nn.Module, ctx, *, batches: int) -> None:
    """Gradients of the training loss for Taylor importance (|weight x grad| per channel)."""
    model.zero_grad(set_to_none=True)
    model.eval()  # BN in eval: scoring must not move the running statistics
    for i, (x, y) in enumerate(loader(ctx.data.train, 64, shuffle=True, device=ctx.device, seed=ctx.seed)):
        if i >= batches:
            break
        out = model(*as_args(to_device(x, ctx.device)))
        F.cross_entropy(out, y.to(ctx.device)).backward()


def _param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def channel_counts(model: nn.Module) -> dict[str, int]:
    """Output channels/features of every Linear/Conv layer (to show what was removed)."""
    return {n: (m.out_features if isinstance(m, nn.Linear) else m.out_channels) for n, m in prunable_layers(model).items()}


def shrink_to_width(model: nn.Module, width_multiplier: float, example_inputs: tuple) -> nn.Module:
    """``model`` with every prunable width scaled by ``width_multiplier`` (in place), keeping
    the classifier's outputs. Used to build a thinner student of the same architecture."""
    config = ChannelPruneConfig(ratio=round(1.0 - width_multiplier, 6))
    if config.ratio == 0:
        return model
    run = RunContext(data=None, device=torch.device("cpu"), teacher=None, example_inputs=tuple(as_args(example_inputs)))
    return prune_channels(model, config, run)
