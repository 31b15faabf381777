"""Hidden-state distillation of transformers (``distill: {hidden_states: true}``) and the
built-in English corpus (``text+corpus:FILE``), on a tiny randomly initialized BERT."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from tests.hf.test_hf import WordTokenizer, _token_bundle
from torchslim.errors import ConfigError, DataError

SENTENCES = Path(__file__).resolve().parents[2] / "src" / "torchslim" / "hf" / "sentences.txt"


def _tiny_bert(layers: int = 2, hidden: int = 32, init: float = 0.2):
    """A random BERT SentenceEmbedder; init 0.2 (not BERT's 0.02) makes every head matter, so
    pruning moves the states measurably."""
    transformers = pytest.importorskip("transformers")
    from torchslim.hf import SentenceEmbedder

    config = transformers.BertConfig(vocab_size=100, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
                                     intermediate_size=64, attn_implementation="eager", initializer_range=init)
    torch.manual_seed(0)
    return SentenceEmbedder(transformers.BertModel(config, add_pooling_layer=False)).eval()


@torch.no_grad()
def _hidden_term(student, teacher, ids, mask) -> float:
    """The hidden-state part of the loss (total minus the output loss) on one batch."""
    from torchslim.train import hidden_state_kd, kd_output_loss

    with hidden_state_kd(student, teacher, task="embedding") as loss_fn:
        out = student(ids, mask)
        total = loss_fn(out, None, (ids, mask))
    return float(total - kd_output_loss(task="embedding")(out, teacher(ids, mask), None))


# ----- the loss ---------------------------------------------------------------------------------


def test_hidden_state_loss_is_zero_for_identical_models_and_positive_for_a_pruned_one():
    import torchslim

    teacher, data = _tiny_bert(), _token_bundle(48)
    ids, mask = data.example_inputs(8, split="test")
    assert _hidden_term(copy.deepcopy(teacher), teacher, ids, mask) == pytest.approx(0.0, abs=1e-9)
    pruned = torchslim.prune(teacher, {"method": "channel", "ratio": 0.5}, example_inputs=(ids, mask))
    assert _hidden_term(pruned, teacher, ids, mask) > 0.1
    assert not any(layer._forward_hooks for layer in teacher.encoder.encoder.layer)  # hooks gone on exit


def test_transformer_layers_are_found_in_encoders_and_classifiers_only():
    transformers = pytest.importorskip("transformers")
    from torchslim.hf import SequenceClassifier, transformer_layers

    encoder_layers = transformer_layers(_tiny_bert(layers=3))
    assert len(encoder_layers) == 3 and all(type(m).__name__ == "BertLayer" for m in encoder_layers)
    config = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=64, num_labels=3)
    classifier = SequenceClassifier(transformers.BertForSequenceClassification(config))
    assert transformer_layers(classifier) == list(classifier.classifier.bert.encoder.layer)
    assert transformer_layers(torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ModuleList([torch.nn.ReLU()]))) == []


def test_hidden_state_loss_ignores_padding_positions():
    from torchslim.train import hidden_state_loss

    torch.manual_seed(0)
    teacher = [torch.randn(2, 5, 8) for _ in range(3)]
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 0]])
    student = [t.clone() for t in teacher]
    for s in student:  # garbage where the mask is 0
        s[mask == 0] = torch.randn(int((mask == 0).sum()), 8) * 100
    assert hidden_state_loss(student, teacher, mask).item() == pytest.approx(0.0, abs=1e-12)
    assert hidden_state_loss(student, teacher).item() > 1.0  # without the mask the padding counts
    student[1][0, 0] += 1.0  # one real token off, in one layer of three
    expected = (1.0 * 8) / float((teacher[1] ** 2).sum(-1)[mask == 1].sum()) / 3
    assert hidden_state_loss(student, teacher, mask).item() == pytest.approx(expected, rel=1e-4)


def test_hidden_states_refuse_mismatched_layers_widths_and_non_transformers(digits):
    import torchslim
    from torchslim.distill import DistillConfig
    from torchslim.train import HiddenStateKD, kd_output_loss
    from torchslim.zoo import create_model

    teacher, data = _tiny_bert(), _token_bundle(48)
    config = DistillConfig(epochs=1, hidden_states=True)
    with pytest.raises(ConfigError, match="student has 1 transformer layers and the teacher 2"):
        torchslim.distill(_tiny_bert(layers=1), teacher, data, config)
    narrow = HiddenStateKD(_tiny_bert(hidden=16), teacher, kd_output_loss(task="embedding"))
    with pytest.raises(ConfigError, match="hidden width kept"):
        narrow.check(data.example_inputs(2))
    zoo = create_model("tiny-transformer")  # a transformer, but not a transformers model with its layer list
    with pytest.raises(ConfigError, match="the student and the teacher have no transformer layers"):
        torchslim.distill(zoo, create_model("tiny-transformer"), digits, config)
    with pytest.raises(ConfigError, match="the teacher has no transformer layers"):
        HiddenStateKD(teacher, zoo, kd_output_loss(task="embedding"))


def test_distill_with_hidden_states_moves_the_states_toward_the_teacher():
    import torchslim
    from torchslim.distill import DistillConfig

    teacher, data = _tiny_bert(), _token_bundle(48)
    ids, mask = data.example_inputs(16, split="test")
    pruned = torchslim.prune(teacher, {"method": "channel", "ratio": 0.5}, data=data)
    before = _hidden_term(pruned, teacher, ids, mask)
    student = torchslim.distill(copy.deepcopy(pruned), teacher, data, DistillConfig(epochs=3, hidden_states=True))
    assert _hidden_term(student, teacher, ids, mask) < before - 0.01
    hooked = [m for m in list(student.modules()) + list(teacher.modules()) if m._forward_hooks]
    assert not hooked  # the run's hooks are removed


def test_distill_step_validates_the_hidden_state_options():
    from torchslim.distill import DistillConfig, validate_step

    config = validate_step({"epochs": 2, "hidden_states": True, "hidden_weight": 0.5})
    assert config.hidden_states and config.hidden_weight == 0.5
    assert "hidden_states" in config.describe() and "hidden" not in DistillConfig().describe()
    for options, field in (({"hidden_states": "sometimes"}, "hidden_states"), ({"hidden_weight": 2.0}, "hidden_weight"),
                           ({"hidden_states": True, "hidden_weight": 0}, "hidden_weight")):
        with pytest.raises(ConfigError, match=field):
            validate_step(options)


def test_iterative_pruning_distills_hidden_states_between_rounds():
    import torchslim

    teacher, data = _tiny_bert(), _token_bundle(48)
    options = {"method": "channel", "ratio": 0.5, "iterations": 2, "finetune_epochs": 1, "finetune_hidden_states": True}
    with pytest.raises(ConfigError, match="teacher="):  # embedding data: fine-tuning always needs one
        torchslim.prune(teacher, options, data=data)
    with pytest.raises(ConfigError, match="finetune_hidden_states"):
        torchslim.prune(teacher, {**options, "finetune_epochs": 0}, data=data, teacher=teacher)
    log: list[str] = []
    pruned = torchslim.prune(teacher, options, data=data, teacher=teacher, log=log.append)
    rounds = [i for i, line in enumerate(log) if "prune round" in line]
    tuned = [i for i, line in enumerate(log) if "val_fidelity" in line]
    assert len(rounds) == 2 and rounds[0] < tuned[0] < rounds[1] < tuned[-1]  # distilled after each round
    assert not [m for m in list(pruned.modules()) + list(teacher.modules()) if m._forward_hooks]


def test_cli_refuses_hidden_state_options_before_any_work(tmp_path):
    from torchslim.cli import run

    assert run(["prune", "--model", "digits-mlp", "--finetune-hidden-states", "--out", str(tmp_path)]) == 2
    assert not (tmp_path / "report.json").exists()


@pytest.mark.slow
def test_cli_distill_hidden_states_on_an_encoder(tmp_path):
    import json

    from tests.hf.test_hf import _tiny_bert_dir
    from torchslim.cli import run

    folder = _tiny_bert_dir(tmp_path, classifier=False, with_tokenizer=True)
    out = tmp_path / "run"
    code = run(["distill", "--teacher", f"hf:{folder}", "--data", f"text:{SENTENCES}", "--width-multiplier", "0.5",
                "--epochs", "1", "--hidden-states", "--batch-sizes", "1", "--out", str(out)])
    report = json.loads((out / "report.json").read_text())
    (candidate,) = report["candidates"]
    assert code == 0 and candidate["status"] == "ok", candidate.get("error")
    notes = [n["text"] for n in candidate["notes"] if n["kind"] == "technique"]
    assert any("hidden_states" in n and "per-token states" in n for n in notes), notes


# ----- the built-in corpus ----------------------------------------------------------------------


def test_english_corpus_is_deterministic_prose_without_excluded_sentences():
    from torchslim.data import english_corpus

    corpus = english_corpus()
    assert len(corpus) > 1000 and corpus == english_corpus()
    assert len(set(corpus)) == len(corpus)
    assert all(6 <= len(s.split()) <= 50 and s[0].isupper() and s[-1] in ".!?" and "::=" not in s for s in corpus)
    excluded = english_corpus(exclude=[corpus[3].upper(), "  ".join(corpus[7].split())])
    assert corpus[3] not in excluded and corpus[7] not in excluded and len(excluded) == len(corpus) - 2
    assert english_corpus(limit=10) == corpus[:10]


def test_text_corpus_spec_trains_on_more_sentences_and_keeps_the_held_out_split():
    from torchslim.data import english_corpus, load_data

    plain = load_data(f"text:{SENTENCES}", tokenizer=WordTokenizer())
    extended = load_data(f"text+corpus:{SENTENCES}", tokenizer=WordTokenizer())
    assert extended.test.sentences == plain.test.sentences and extended.val.sentences == plain.val.sentences
    assert extended.train.sentences[:len(plain.train)] == plain.train.sentences
    assert len(extended.train) == len(plain.train) + len(english_corpus()) == len(plain.train) + extended.extra["corpus"]["sentences"]
    assert extended.train.input_ids.shape[1] == 128 and extended.task == "embedding"
    assert not set(extended.train.sentences) & set(extended.test.sentences + extended.val.sentences)


def test_text_corpus_spec_never_trains_on_a_held_out_sentence_it_also_holds(tmp_path):
    from torchslim.data import english_corpus, load_data

    corpus = english_corpus(limit=30)
    mixed = tmp_path / "mixed.txt"
    mixed.write_text("\n".join(corpus) + "\n")  # every line of the file is also a corpus sentence
    bundle = load_data(f"text+corpus:{mixed}", tokenizer=WordTokenizer())
    held_out = set(bundle.test.sentences + bundle.val.sentences)
    assert held_out and not held_out & set(bundle.train.sentences)
    labeled = tmp_path / "labeled.txt"
    labeled.write_text("0\tone sentence here\n1\tanother one\n0\ta third one\n")
    with pytest.raises(DataError, match="unlabeled"):
        load_data(f"text+corpus:{labeled}", tokenizer=WordTokenizer())
