"""Every artifact of a token model takes any batch size and any sequence length up to the
model's maximum (issue 13): lengths 1, 7, 13, 64, 128 at batch 1 and 5, against the original
model, with real padding in the attention mask; a shape outside the range is an ArtifactError.

Fast tests use a tiny randomly initialised BERT (transformers, no download; 128 positions);
the compile runtime, AOTInductor and the real MiniLM are slow-marked."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from torchslim.artifacts import load, read_manifest, save_exported
from torchslim.core.export import (
    dynamic_axes,
    export_program,
    model_max_length,
    output_sequence_axes,
    sequence_buckets,
)
from torchslim.errors import ArtifactError

transformers = pytest.importorskip("transformers")

LENGTHS = (1, 7, 13, 64, 128)
BATCHES = (1, 5)
NAMES = ["input_ids", "attention_mask"]


def tiny_bert(max_positions: int = 128) -> nn.Module:
    from torchslim.hf._wrap import SentenceEmbedder

    config = transformers.BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=64, max_position_embeddings=max_positions,
                                     attn_implementation="eager")
    torch.manual_seed(0)
    return SentenceEmbedder(transformers.BertModel(config, add_pooling_layer=False)).eval()


class TokenStates(nn.Module):
    """Per-token outputs (batch, seq, hidden): the sequence axis reaches the output."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids, attention_mask):
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def batch(batch_size: int, length: int, vocab: int = 120, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids with real padding: every other row is shorter, its tail id 0 and mask 0."""
    g = torch.Generator().manual_seed(seed * 1000 + batch_size * 200 + length)
    ids = torch.randint(1, vocab, (batch_size, length), generator=g)
    mask = torch.ones_like(ids)
    for row in range(1, batch_size, 2):
        keep = max(1, length - 1 - row)
        ids[row, keep:], mask[row, keep:] = 0, 0
    return ids, mask


def shapes():
    return [(b, n) for n in LENGTHS for b in BATCHES]


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.cosine_similarity(a.reshape(len(a), -1).float(), b.reshape(len(b), -1).float(), dim=1).min())


def check_all_shapes(model, artifact, *, exact: bool, min_cosine: float = 0.99) -> None:
    for batch_size, length in shapes():
        inputs = batch(batch_size, length)
        with torch.no_grad():
            want, got = model(*inputs), artifact(*inputs)
        assert got.shape == want.shape, (batch_size, length)
        if exact:
            torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-3, msg=f"batch {batch_size} x {length}")
        else:
            assert cosine(got, want) >= min_cosine, (batch_size, length, cosine(got, want))


def check_refusals(artifact) -> None:
    with pytest.raises(ArtifactError, match=r"1\.\.128"):
        artifact(*batch(2, 129))
    with pytest.raises(ArtifactError, match="accepts"):
        artifact(torch.ones(2, 4, 3, dtype=torch.long), torch.ones(2, 4, 3, dtype=torch.long))


@pytest.fixture(scope="module")
def bert():
    return tiny_bert()


@pytest.fixture(scope="module")
def example():
    return batch(2, 20)


@pytest.fixture(scope="module")
def pt2(bert, example, tmp_path_factory):
    return save_exported(bert, tmp_path_factory.mktemp("pt2") / "model.pt2", example, task="embedding",
                         input_names=NAMES)


# -- the export helper ---------------------------------------------------------------------------

def test_one_export_helper_makes_batch_and_sequence_dynamic(bert, example):
    assert model_max_length(bert) == 128
    program = export_program(bert, example)
    ids_axes, mask_axes = dynamic_axes(program)
    assert ids_axes == mask_axes == {0: (1, 4096), 1: (1, 128)}
    assert output_sequence_axes(program) == [False]  # a pooled embedding has no sequence axis
    assert output_sequence_axes(export_program(TokenStates(bert.encoder), example)) == [True]


def test_short_examples_do_not_specialise(bert):
    # Exported from a batch of 1 and a length of 1: torch.export would pin both to 1.
    program = export_program(bert, batch(1, 1))
    assert dynamic_axes(program)[0] == {0: (1, 4096), 1: (1, 128)}
    module = program.module()
    ids, mask = batch(3, 50)
    torch.testing.assert_close(module(ids, mask), bert(ids, mask), atol=1e-5, rtol=1e-4)


class PinnedPositions(nn.Module):
    """A learned position table added whole: the model itself fixes the sequence length."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 8)
        self.pos = nn.Parameter(torch.randn(1, 12, 8))

    def forward(self, ids):
        return (self.embed(ids) + self.pos).mean(dim=1)


def test_a_model_that_pins_the_sequence_exports_with_it_static(tmp_path):
    model = PinnedPositions().eval()
    path = save_exported(model, tmp_path / "pinned.pt2", (torch.randint(0, 50, (2, 12)),))
    spec = read_manifest(path).inputs[0]
    assert spec.dynamic == {"0": [1, 4096]} and spec.buckets is None
    loaded = load(path)
    ids = torch.randint(0, 50, (5, 12))
    torch.testing.assert_close(loaded(ids), model(ids))
    with pytest.raises(ArtifactError, match=r"int64\[1\.\.4096, 12\]"):
        loaded(torch.randint(0, 50, (5, 7)))


def test_sequence_buckets():
    assert sequence_buckets(128) == [16, 32, 64, 128]
    assert sequence_buckets(512) == [16, 32, 64, 128, 256, 512]
    assert sequence_buckets(100) == [16, 32, 64, 100]
    assert sequence_buckets(8) == [8]


# -- artifacts -------------------------------------------------------------------------------------

def test_manifest_records_dynamic_axes_and_buckets(pt2):
    ids, mask = read_manifest(pt2).inputs
    assert (ids.name, mask.name) == tuple(NAMES)
    assert ids.dynamic == mask.dynamic == {"0": [1, 4096], "1": [1, 128]}
    assert ids.buckets == mask.buckets == [16, 32, 64, 128]
    assert read_manifest(pt2).extra["sequence_outputs"] == [False]


def test_eager_pt2_takes_every_length(bert, pt2):
    artifact = load(pt2, runtime="eager")
    check_all_shapes(bert, artifact, exact=True)
    check_refusals(artifact)


def test_onnx_takes_every_length(bert, example, tmp_path):
    pytest.importorskip("onnxruntime")
    from torchslim.export import ArtifactInfo, export

    path = export(bert, tmp_path / "model.onnx", example, "onnx", info=ArtifactInfo("embedding", NAMES))
    assert read_manifest(path).inputs[0].dynamic == {"0": [1, 4096], "1": [1, 128]}
    artifact = load(path)
    check_all_shapes(bert, artifact, exact=True)
    check_refusals(artifact)


def test_dynamic_int8_pt2_takes_every_length(bert, example, tmp_path):
    from torchslim.quantize import DynamicInt8Config, quantize

    quantized = quantize(bert, DynamicInt8Config(), example_inputs=example)
    path = save_exported(quantized, tmp_path / "int8.pt2", example, task="embedding", input_names=NAMES)
    assert read_manifest(path).inputs[1].dynamic == {"0": [1, 4096], "1": [1, 128]}
    artifact = load(path, runtime="eager")
    check_all_shapes(bert, artifact, exact=False)
    check_refusals(artifact)


def test_image_model_keeps_its_image_shape(tmp_path):
    from torchslim.zoo import create_model

    model = create_model("tiny-transformer").eval()
    path = save_exported(model, tmp_path / "tt.pt2", (torch.randn(2, 1, 8, 8),))
    spec = read_manifest(path).inputs[0]
    assert spec.dynamic == {"0": [1, 4096]} and spec.buckets is None
    artifact = load(path)
    for batch_size in BATCHES:
        x = torch.randn(batch_size, 1, 8, 8)
        torch.testing.assert_close(artifact(x), model(x))
    with pytest.raises(ArtifactError, match=r"float32\[1\.\.4096, 1, 8, 8\]"):
        artifact(torch.randn(2, 1, 9, 8))


# -- per-shape runtimes (slow: inductor / AOTInductor compiles) ----------------------------------

@pytest.mark.slow
def test_compile_runtime_pads_to_buckets(tmp_path):
    # 32 positions: buckets 16 and 32, four compiles at batch 1 and 5 (128 positions took eight,
    # a minute on 2 cores); the bucket arithmetic for 128 is test_sequence_buckets'.
    model = tiny_bert(max_positions=32)
    path = save_exported(model, tmp_path / "short.pt2", batch(2, 20), task="embedding", input_names=NAMES)
    artifact = load(path, runtime="compile")
    assert artifact.buckets == [16, 32]
    seconds = artifact.precompile(batch_sizes=(1, 5))
    assert sorted(seconds) == [(b, n) for b in (1, 5) for n in (16, 32)]
    compiled_shapes = set(artifact._seen)
    for batch_size, length in [(b, n) for n in (1, 7, 13, 16, 17, 32) for b in BATCHES]:
        inputs = batch(batch_size, length)
        with torch.no_grad():
            torch.testing.assert_close(artifact(*inputs), model(*inputs), atol=1e-4, rtol=1e-3,
                                       msg=f"batch {batch_size} x {length}")
    assert artifact._seen == compiled_shapes  # every request hit a precompiled bucket
    with pytest.raises(ArtifactError, match=r"1\.\.32"):
        artifact(*batch(2, 33))


@pytest.mark.slow
def test_compile_runtime_slices_sequence_outputs(bert, example, tmp_path):
    model = TokenStates(bert.encoder).eval()
    path = save_exported(model, tmp_path / "states.pt2", example, input_names=NAMES)
    assert read_manifest(path).extra["sequence_outputs"] == [True]
    artifact = load(path, runtime="compile")
    for batch_size, length in [(1, 7), (5, 13)]:
        inputs = batch(batch_size, length)
        got, want = artifact(*inputs), model(*inputs)
        assert got.shape == want.shape == (batch_size, length, 32)
        keep = inputs[1].bool()  # padded positions' states are not meaningful in either
        torch.testing.assert_close(got[keep], want[keep], atol=1e-4, rtol=1e-3)


@pytest.mark.slow
def test_aoti_takes_every_length(bert, example, tmp_path):
    from torchslim.export import ArtifactInfo, export

    path = export(bert, tmp_path / "model.pt2", example, "pt2", info=ArtifactInfo("embedding", NAMES))
    assert read_manifest(path).inputs[0].dynamic == {"0": [1, 4096], "1": [1, 128]}
    artifact = load(path)
    check_all_shapes(bert, artifact, exact=True)
    check_refusals(artifact)


# -- the real MiniLM (slow) ------------------------------------------------------------------------

def minilm_batch(handle, batch_size: int, length: int):
    """Real sentences tokenized and cut/padded to ``length`` (a real mask, real padding)."""
    words = "the quick brown fox jumps over the lazy dog while a cat sleeps in the warm sun".split()
    sentences = [" ".join(words[: 3 + 5 * i]) * (1 + length // 20) for i in range(batch_size)]
    encoded = handle.hf.tokenizer(sentences, padding="max_length", truncation=True, max_length=length,
                                  return_tensors="pt")
    return encoded["input_ids"], encoded["attention_mask"]


def check_minilm(handle, artifact, *, min_cosine: float) -> None:
    for batch_size, length in shapes():
        inputs = minilm_batch(handle, batch_size, length) if length > 1 else (
            torch.full((batch_size, 1), 101), torch.ones(batch_size, 1, dtype=torch.long))
        with torch.no_grad():
            got, want = artifact(*inputs), handle.model(*inputs)
        assert got.shape == want.shape
        assert cosine(got, want) >= min_cosine, (batch_size, length, cosine(got, want))
    with pytest.raises(ArtifactError, match=r"1\.\.512"):
        artifact(torch.ones(1, 513, dtype=torch.long), torch.ones(1, 513, dtype=torch.long))


@pytest.fixture(scope="module")
def minilm_example(minilm):
    handle, _bundle = minilm
    return minilm_batch(handle, 2, 128)


@pytest.mark.slow
def test_minilm_pt2_and_onnx(minilm, minilm_example, tmp_path):
    from torchslim.export import ArtifactInfo, export

    handle, _ = minilm
    pt2 = save_exported(handle.model, tmp_path / "m.pt2", minilm_example, task="embedding", input_names=NAMES)
    assert read_manifest(pt2).inputs[0].buckets == [16, 32, 64, 128, 256, 512]
    check_minilm(handle, load(pt2, runtime="eager"), min_cosine=0.9999)
    onnx_path = export(handle.model, tmp_path / "m.onnx", minilm_example, "onnx", info=ArtifactInfo("embedding", NAMES))
    check_minilm(handle, load(onnx_path), min_cosine=0.9999)


@pytest.mark.slow
@pytest.mark.heavy  # 30 s each on 2 cores: `make test-heavy`; test_dynamic_int8_pt2_takes_every_length covers CI
@pytest.mark.parametrize("method", ["dynamic", "static"])
def test_minilm_quantized_pt2(minilm, minilm_example, method, tmp_path):
    from torchslim.quantize import DynamicInt8Config, StaticInt8Config, quantize

    handle, bundle = minilm
    config = DynamicInt8Config() if method == "dynamic" else StaticInt8Config(calibration_batches=4)
    quantized = quantize(handle.model, config, data=bundle, example_inputs=minilm_example)
    path = save_exported(quantized, tmp_path / "q.pt2", minilm_example, task="embedding", input_names=NAMES)
    # Plain PT2E static int8 (no fallback) measured 0.984 on a lone [CLS] token and 0.989-0.99+
    # on short sentences across runs (calibration batches vary): the test holds it to 0.98 and
    # dynamic int8 to 0.99. Reaching 0.99 with static int8 is fallback's job (docs/quantization.md).
    check_minilm(handle, load(path, runtime="eager"), min_cosine=0.99 if method == "dynamic" else 0.98)


@pytest.mark.slow
@pytest.mark.heavy  # minutes on 2 cores: `make test-heavy`
def test_minilm_compile_runtime(minilm, minilm_example, tmp_path):
    handle, _ = minilm
    path = save_exported(handle.model, tmp_path / "m.pt2", minilm_example, task="embedding", input_names=NAMES)
    check_minilm(handle, load(path, runtime="compile"), min_cosine=0.9999)
