"""ORT's transformer fusions before dynamic int8 for BERT-like encoders: the fused graph has
Attention and SkipLayerNormalization, takes any batch and sequence length, and stays within the
int8 tolerance (mean cosine >= 0.98 to PyTorch, checked per length here too)."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from torchslim.artifacts import load, read_manifest  # noqa: E402
from torchslim.export import ArtifactInfo, export  # noqa: E402
from torchslim.export._ort_fusion import encoder_config  # noqa: E402
from torchslim.hf._wrap import SentenceEmbedder  # noqa: E402


@pytest.fixture(scope="module")
def tiny_bert():
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=64, max_position_embeddings=64, attn_implementation="eager")
    # eager attention, as torchslim loads hf: models: the optimizer's patterns do not match SDPA graphs
    return SentenceEmbedder(transformers.BertModel(config)).eval()


def test_encoder_config_finds_bert_only(tiny_bert):
    assert encoder_config(tiny_bert) == {"model_type": "bert", "num_heads": 4, "hidden_size": 32}
    assert encoder_config(torch.nn.Linear(3, 3)) is None


def test_dynamic_int8_of_an_encoder_is_fused_and_takes_any_length(tiny_bert, tmp_path):
    example = (torch.randint(1, 100, (2, 16)), torch.ones(2, 16, dtype=torch.int64))
    path = export(tiny_bert, tmp_path, example, {"format": "onnx", "quantize": "dynamic"},
                  info=ArtifactInfo(task="embedding", input_names=["input_ids", "attention_mask"]))
    extra = read_manifest(path).extra
    assert extra["fused_operators"]["Attention"] == 2 and extra["fused_operators"]["SkipLayerNormalization"] == 4
    assert "dynamo=False" in extra["exporter"] and extra["precision"] == "int8"
    fn = load(path)
    for batch, length in ((1, 1), (1, 7), (5, 13), (5, 40)):
        ids = torch.randint(1, 100, (batch, length))
        mask = torch.ones(batch, length, dtype=torch.int64)
        if batch > 1:
            mask[1:, length // 2:] = 0
        with torch.no_grad():
            expected = tiny_bert(ids, mask)
        cosine = torch.nn.functional.cosine_similarity(fn(ids, mask), expected, dim=1)
        assert cosine.mean() >= 0.98, (batch, length, cosine)


def test_static_int8_and_fp32_keep_the_dynamo_export(tiny_bert, tmp_path):
    example = (torch.randint(1, 100, (2, 16)), torch.ones(2, 16, dtype=torch.int64))
    path = export(tiny_bert, tmp_path, example, {"format": "onnx"}, info=ArtifactInfo(task="embedding"))
    extra = read_manifest(path).extra
    assert "fused_operators" not in extra and "dynamo=True" in extra["exporter"]
