"""A built-in English sentence corpus for distilling text encoders, offline.

Source: CPython's ``pydoc_data.topics.topics``, the language reference and its neighbours
as plain English prose (79 topics, about 465 KB on Python 3.11). It ships with every CPython,
so it needs no download and no extra package, and it is edited text written in whole
sentences. Its weakness is its domain: it is technical prose about Python, while the
held-out sentences of ``src/torchslim/hf/sentences.txt`` are everyday English. For an
encoder the training text only has to exercise the same weights the test sentences do
(ordinary English syntax and vocabulary), and ~3,000 varied sentences do that better than
the ~200 training sentences of the built-in file. The text changes with the Python version,
so the corpus does too (``corpus_digest`` names the one used).

Extraction is deterministic: topics in sorted order; headings and version notes dropped; paragraphs split into sentences at ``.``/``!``/``?``
followed by a capital; only sentences of 6-50 words, mostly letters, without code marks are
kept (that rejects code, grammar rules and examples); duplicates and any sentence given in ``exclude`` (compared case- and space-insensitively)
removed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

MIN_WORDS, MAX_WORDS = 6, 50
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_CODE_MARKS = ("::=", ">>>", "->", "{", "}", "==", "\\")
_SKIPPED_PREFIXES = ("Changed in version", "Added in version", "New in version", "Deprecated since",
                     "See also", "Note:", "Footnotes")


def english_corpus(exclude: Iterable[str] = (), limit: int | None = None) -> list[str]:
    """Sentences of CPython's built-in documentation (see the module docstring), in a fixed
    order, none equal to a sentence of ``exclude``; the first ``limit`` of them if given."""
    from pydoc_data.topics import topics

    excluded = {_key(s) for s in exclude}
    seen: set[str] = set()
    sentences: list[str] = []
    for name in sorted(topics):
        for sentence in _sentences(topics[name]):
            key = _key(sentence)
            if key in seen or key in excluded:
                continue
            seen.add(key)
            sentences.append(sentence)
    return sentences if limit is None else sentences[:limit]


def corpus_digest(sentences: list[str]) -> str:
    """A short SHA-256 of the sentences, to name the corpus a result was measured with."""
    return hashlib.sha256("\n".join(sentences).encode("utf-8")).hexdigest()[:16]


def _sentences(text: str) -> list[str]:
    kept = []
    for paragraph in _prose_paragraphs(text):
        for sentence in _SENTENCE_END.split(paragraph):
            if _is_prose(sentence):
                kept.append(sentence)
    return kept


def _prose_paragraphs(text: str) -> list[str]:
    """Blank-line-separated paragraphs, each joined to one line, headings and notes dropped.
    Indented paragraphs are kept (the method descriptions are indented prose); code and
    grammar blocks are rejected sentence by sentence in ``_is_prose``."""
    paragraphs, current = [], []
    for line in text.splitlines() + [""]:
        stripped = line.strip()
        if stripped and not set(stripped) <= set("*=-~^"):
            current.append(stripped)
            continue
        if current and not current[0].startswith(_SKIPPED_PREFIXES):
            paragraphs.append(" ".join(current))
        current = []
    return paragraphs


def _is_prose(sentence: str) -> bool:
    words = sentence.split()
    if not MIN_WORDS <= len(words) <= MAX_WORDS or sentence[-1] not in ".!?" or not sentence[0].isupper():
        return False
    if any(mark in sentence for mark in _CODE_MARKS):
        return False
    letters = sum(c.isalpha() or c.isspace() for c in sentence)
    return letters >= 0.85 * len(sentence) and sentence.count('"') <= 6


def _key(sentence: str) -> str:
    return " ".join(sentence.casefold().split())
