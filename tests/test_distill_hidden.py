"""The built-in English corpus (``text+corpus:FILE``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_hf import WordTokenizer
from torchslim.errors import DataError

SENTENCES = Path(__file__).resolve().parents[1] / "src" / "torchslim" / "hf" / "sentences.txt"


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
