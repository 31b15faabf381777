"""Fisher importance (``importance: fisher``): heads and FFN neurons scored by what removing
them does to the output on data, on a tiny randomly initialized BERT and a zoo MLP."""

from __future__ import annotations

import pytest
import torch

from tests.distill.test_distill_hidden import _tiny_bert
from tests.hf.test_hf import _token_bundle
from torchslim.errors import ConfigError, UnsupportedError


def _fisher_head_scores(model, data) -> torch.Tensor:
    """(layers, heads) Fisher scores of the tiny BERT's heads, from the library's scorer."""
    from torchslim.data import loader
    from torchslim.prune._attention import attention_modules
    from torchslim.prune._fisher import FisherImportance, channel_scores

    scorer = FisherImportance(attention_modules(model), whole_heads=True)
    batches = [batch for _ in range(4) for batch in loader(data.train, 16)]  # 4 random directions per sentence
    scorer.collect(model, batches, "embedding", device=torch.device("cpu"))
    layers = model.encoder.encoder.layer
    return torch.stack([channel_scores(scorer.gradients[layer.attention.output.dense], 4)[::8] for layer in layers])


@torch.no_grad()
def _ablation_losses(model, data) -> torch.Tensor:
    """(layers, heads): mean 1 - cosine to the full model's embeddings with that one head zeroed."""
    ids, mask = data.train.input_ids, data.train.attention_mask
    reference = model(ids, mask)
    losses = torch.zeros(len(model.encoder.encoder.layer), 4)
    for li, layer in enumerate(model.encoder.encoder.layer):
        for head in range(4):
            def zero_head(_m, args, head=head):
                x = args[0].clone()
                x[..., head * 8:(head + 1) * 8] = 0
                return (x,)
            handle = layer.attention.output.dense.register_forward_pre_hook(zero_head)
            out = model(ids, mask)
            handle.remove()
            losses[li, head] = (1 - torch.nn.functional.cosine_similarity(out, reference)).mean()
    return losses


def _rank_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    ra, rb = a.flatten().argsort().argsort().float(), b.flatten().argsort().argsort().float()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()))


def test_fisher_head_scores_rank_heads_like_removing_them():
    model, data = _tiny_bert(), _token_bundle(96)
    scores, losses = _fisher_head_scores(model, data), _ablation_losses(model, data)
    assert _rank_correlation(scores, losses) > 0.7
    assert scores.flatten().argmin() == losses.flatten().argmin()


def test_fisher_channel_pruning_removes_the_heads_that_matter_least_and_keeps_the_hidden_width():
    import torchslim

    model, data = _tiny_bert(), _token_bundle(96)
    losses = _ablation_losses(model, data)
    pruned = torchslim.prune(model, {"method": "channel", "ratio": 0.5, "importance": "fisher", "taylor_batches": 4},
                             data=data)
    for layer in pruned.encoder.encoder.layer:
        assert layer.attention.self.num_attention_heads == 2 and layer.intermediate.dense.out_features == 32
        assert layer.attention.output.dense.out_features == 32  # the hidden width stays
    assert not any(m._forward_pre_hooks for m in pruned.modules())  # the masks are gone
    # In every layer the head whose removal costs the most is kept and the one that costs the least is gone.
    for li, kept in enumerate(_kept_heads(pruned, model)):
        assert int(losses[li].argmax()) in kept and int(losses[li].argmin()) not in kept, (li, losses[li])


def _kept_heads(pruned, model) -> list[list[int]]:
    """Per layer, which of the 4 original heads the pruned model kept (matched by their q rows)."""
    kept = []
    for layer, original in zip(pruned.encoder.encoder.layer, model.encoder.encoder.layer, strict=True):
        rows = [original.attention.self.query.weight[h * 8:(h + 1) * 8] for h in range(4)]
        weight = layer.attention.self.query.weight
        kept.append([h for h in range(4) if any(torch.equal(rows[h], weight[k:k + 8]) for k in range(0, len(weight), 8))])
    return kept


def test_fisher_global_scope_ranks_heads_across_layers():
    import torchslim

    model, data = _tiny_bert(), _token_bundle(96)
    losses = _ablation_losses(model, data).flatten()
    pruned = torchslim.prune(model, {"method": "channel", "ratio": 0.5, "importance": "fisher", "scope": "global"}, data=data)
    kept = [li * 4 + h for li, heads in enumerate(_kept_heads(pruned, model)) for h in heads]
    assert len(kept) == 4 and int(losses.argmax()) in kept and int(losses.argmin()) not in kept
    assert [len(heads) for heads in _kept_heads(pruned, model)] != [2, 2]  # not the uniform split


def test_fisher_works_on_classification_data_and_refuses_convolutions(digits):
    import torchslim
    from torchslim.zoo import create_model

    mlp = create_model("digits-mlp").eval()
    pruned = torchslim.prune(mlp, {"method": "channel", "ratio": 0.5, "importance": "fisher"}, data=digits)
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in mlp.parameters())
    cnn = create_model("digits-cnn").eval()
    with pytest.raises(UnsupportedError, match="fisher"):
        torchslim.prune(cnn, {"method": "channel", "ratio": 0.5, "importance": "fisher"}, data=digits)


def test_fisher_needs_data_and_taylor_on_embeddings_points_to_it():
    import torchslim

    model, data = _tiny_bert(layers=1), _token_bundle(24)
    with pytest.raises(ConfigError, match="needs data"):
        torchslim.prune(model, {"method": "channel", "importance": "fisher"}, example_inputs=data.example_inputs(2))
    with pytest.raises(ConfigError, match="use fisher"):
        torchslim.prune(model, {"method": "channel", "importance": "taylor"}, data=data)
