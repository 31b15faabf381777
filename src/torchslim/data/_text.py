"""``text:FILE`` data: sentences tokenized with an ``hf:`` model's own tokenizer.

File format (UTF-8):

- one sentence per line; blank lines are skipped; the task is ``embedding`` (metric:
  fidelity, the mean cosine similarity to the unoptimized model's embeddings);
- or ``LABEL<TAB>SENTENCE`` on every line, LABEL a non-negative integer class index:
  the task is ``classification`` (metric: accuracy), for sequence-classification heads.
  A file where only some lines carry a label is refused (it is almost always a mistake).

Lines are read at most ``MAX_LINE_CHARS`` characters at a time and a longer line is cut there
before the tokenizer sees it (with a warning): no sentence reaches the model past ``max_length``
tokens anyway, and a file holding one 200 MB line must not cost gigabytes of tokenizer memory.

Every sentence is tokenized to a fixed ``max_length`` (128 by default) with padding and
truncation, so every batch has the same shape (what compiled and exported artifacts are timed
on). Items are ``((input_ids, attention_mask), target)``, all int64; embedding targets are 0.
The split is seeded: 70% train, 10% validation, 20% test (at least one sentence each); the
test split is what fidelity / accuracy is measured on and no optimization step sees it.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, default_collate

from torchslim.core.log import say
from torchslim.data._bundle import DataBundle
from torchslim.errors import DataError, SpecError

DEFAULT_MAX_LENGTH = 128
MAX_LINE_CHARS = 1 << 16  # a token is >= 1 character, so no sentence loses a token it could keep
SPLIT_FRACTIONS = (0.7, 0.1, 0.2)  # train, val, test
_LABELED = re.compile(r"^(\d+)\t(.*\S.*)$")


def trim_padding(batch: list):
    """Collate text items, then cut the padding columns no sentence of the batch reaches.

    For training only: the built-in sentences average ~13 tokens padded to 128, and the attention
    mask already hides the padding (right padding leaves every real token's position unchanged),
    so the result is the same for less work: 2 distillation epochs of pruned MiniLM took 12.7 s
    instead of 40.2 s (fidelity 0.778 vs 0.779). Measurement keeps
    the fixed length: compiled and exported artifacts are built for it. Left-padded batches
    (a real token in the last column) are left as they are.
    """
    (input_ids, attention_mask), targets = default_collate(batch)
    used = attention_mask.any(dim=0).nonzero()
    length = int(used.max()) + 1 if len(used) else 1
    return (input_ids[:, :length], attention_mask[:, :length]), targets


class TokenizedText(Dataset):
    """Tokenized sentences; item ``i`` is ``((input_ids[i], attention_mask[i]), targets[i])``."""

    def __init__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, targets: torch.Tensor,
                 sentences: list[str]) -> None:
        self.input_ids = input_ids
        self.attention_mask = attention_mask
        self.targets = targets
        self.sentences = sentences

    def __len__(self) -> int:
        return len(self.sentences)

    def __getitem__(self, index: int):
        return (self.input_ids[index], self.attention_mask[index]), self.targets[index]

    # fit trains on batches trimmed to their longest sentence (see trim_padding)
    training_collate = staticmethod(trim_padding)

    def subset(self, indices: list[int]) -> TokenizedText:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return TokenizedText(self.input_ids[idx], self.attention_mask[idx], self.targets[idx],
                             [self.sentences[i] for i in indices])


def read_sentences(spec: str, path: Path) -> tuple[list[str], list[int] | None]:
    """The sentences of a text file and, when every line is ``LABEL<TAB>SENTENCE``, the labels."""
    if not path.is_file():
        raise SpecError(
            f"{spec}: file {str(path)!r} does not exist. 'text:FILE' takes a UTF-8 text file with one "
            "sentence per line (or LABEL<TAB>SENTENCE lines for classification)."
        )
    try:
        lines, cut = _bounded_lines(path)
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{spec}: cannot read {str(path)!r} as UTF-8 text ({e}).") from None
    if cut:
        say(f"warning: {spec}: {len(cut)} line(s) longer than {MAX_LINE_CHARS} characters were cut there "
            f"(line {', '.join(map(str, cut[:5]))}{', ...' if len(cut) > 5 else ''}); a sentence longer than "
            "the model's maximum length is truncated by the tokenizer anyway")
    lines = [(n, line) for n, line in lines if line.strip()]
    if not lines:
        raise DataError(
            f"{spec}: {str(path)!r} is empty or holds only blank lines. Put one sentence per line "
            "(at least 3: the data is split into train, validation and test)."
        )
    matches = [(n, _LABELED.match(line)) for n, line in lines]
    labeled = [n for n, m in matches if m]
    if labeled and len(labeled) != len(lines):
        first = next(n for n, m in matches if not m)
        raise DataError(
            f"{spec}: {len(labeled)} of {len(lines)} lines are LABEL<TAB>SENTENCE but line {first} is not. "
            "Label every line (an integer class, a tab, the sentence) for classification, or no line "
            "for embedding data."
        )
    if labeled:
        return [m.group(2).strip() for _, m in matches], [int(m.group(1)) for _, m in matches]
    return [line.strip() for _, line in lines], None


def _bounded_lines(path: Path) -> tuple[list[tuple[int, str]], list[int]]:
    """(line number, text) for every line, each at most ``MAX_LINE_CHARS`` characters (the rest
    of a longer line is read in bounded chunks and dropped), and the numbers of the cut lines."""
    lines, cut = [], []
    with open(path, encoding="utf-8", newline=None) as f:
        for n in itertools.count(1):
            line = f.readline(MAX_LINE_CHARS + 1)
            if not line:
                break
            if len(line) > MAX_LINE_CHARS and not line.endswith("\n"):
                cut.append(n)
                line = line[:MAX_LINE_CHARS]
                while (rest := f.readline(MAX_LINE_CHARS)) and not rest.endswith("\n"):
                    pass
            lines.append((n, line.rstrip("\r\n")))
    return lines, cut


def load_text(spec: str, path: Path, *, tokenizer: Any = None, seed: int = 0,
              max_length: int = DEFAULT_MAX_LENGTH, corpus: bool | int = False) -> DataBundle:
    """Read, tokenize and split a ``text:FILE``; see the module docstring for the format.

    ``corpus`` (``text+corpus:FILE``): the training split also gets the sentences of the
    built-in English corpus (``torchslim.data.english_corpus``; an int: its first that many),
    minus every sentence of FILE. Validation and test are FILE's, the same as without it.
    """
    if tokenizer is None:
        raise SpecError(
            f"{spec}: text data is tokenized with the model's own tokenizer, so it needs a Hugging Face "
            "model: use --model hf:DIR (a local transformers model directory) or --model hf:minilm."
        )
    sentences, labels = read_sentences(spec, path)
    if len(sentences) < 3:
        raise DataError(f"{spec}: {len(sentences)} sentence(s) found; at least 3 are needed "
                        "(one each for the train, validation and test splits).")
    limit = getattr(tokenizer, "model_max_length", max_length)
    if isinstance(limit, int) and 0 < limit < max_length:
        max_length = limit
    encoded = tokenizer(sentences, padding="max_length", truncation=True, max_length=max_length,
                        return_tensors="pt")
    input_ids = encoded["input_ids"].to(torch.int64)
    attention_mask = encoded["attention_mask"].to(torch.int64)
    targets = torch.as_tensor(labels if labels is not None else [0] * len(sentences), dtype=torch.int64)
    full = TokenizedText(input_ids, attention_mask, targets, sentences)
    train, val, test = _split(full, seed)
    extra = {"tokenizer": tokenizer, "max_length": max_length, "input_names": ["input_ids", "attention_mask"]}
    if corpus is not False:
        if labels is not None:
            raise DataError(f"{spec}: the built-in corpus adds unlabeled sentences, but {str(path)!r} is labeled "
                            "(LABEL<TAB>SENTENCE). Use text:FILE for classification data.")
        train, extra["corpus"] = _add_corpus(train, sentences, tokenizer, max_length,
                                             None if corpus is True else int(corpus))
    if labels is None:
        return DataBundle(spec, train, val, test, "embedding", None, None, extra)
    num_classes = max(labels) + 1
    if len(set(train.targets.tolist())) < 2:
        raise DataError(f"{spec}: the training split has fewer than 2 classes; a classifier needs at least 2 "
                        "(labels are 0-based integers before the tab).")
    return DataBundle(spec, train, val, test, "classification", num_classes, None, extra)


def _add_corpus(train: TokenizedText, exclude: list[str], tokenizer: Any, max_length: int,
                limit: int | None) -> tuple[TokenizedText, dict]:
    """``train`` followed by the built-in corpus, tokenized the same way; and what was added."""
    from torchslim.data._corpus import corpus_digest, english_corpus

    added = english_corpus(exclude=exclude, limit=limit)
    encoded = tokenizer(added, padding="max_length", truncation=True, max_length=max_length, return_tensors="pt")
    combined = TokenizedText(
        torch.cat([train.input_ids, encoded["input_ids"].to(torch.int64)]),
        torch.cat([train.attention_mask, encoded["attention_mask"].to(torch.int64)]),
        torch.cat([train.targets, torch.zeros(len(added), dtype=torch.int64)]),
        train.sentences + added,
    )
    return combined, {"sentences": len(added), "digest": corpus_digest(added)}


def _split(full: TokenizedText, seed: int) -> tuple[TokenizedText, TokenizedText, TokenizedText]:
    n = len(full)
    n_test = max(1, round(n * SPLIT_FRACTIONS[2]))
    n_val = max(1, round(n * SPLIT_FRACTIONS[1]))
    n_train = n - n_test - n_val
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return (full.subset(perm[:n_train]), full.subset(perm[n_train:n_train + n_val]),
            full.subset(perm[n_train + n_val:]))
