"""The sentence of a passage that answers: by meaning (semantic, the default) or by shared terms (lexical).

Sentences come from the splitter's own segmenter (index/splitter.py), so a highlight never cuts
a decimal, an abbreviation or a URL that a passage boundary would respect. The semantic highlight
is the passage's sentence whose stored vector (index/writes.py, index/search.py) is nearest the
question: no model call at query time.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import regex

from citesearch.index.lexical import terms
from citesearch.index.splitter import sentences
from citesearch.index.store import PassageRow

_SHARED = regex.compile(r"\p{N}+|[\p{Latin}\p{N}][\p{Latin}\p{N}\p{M}]+")


@dataclass(frozen=True)
class Highlight:
    """The sentence(s) of a passage that best answer the question, with offsets into the article."""

    text: str
    char_start: int
    char_end: int
    score: float | None = None
    """The sentence's inner product with the question (semantic highlights; unit vectors of one
    model: their cosine); None for a lexical highlight."""
    probability: float | None = None
    """The answer model's calibrated probability that this sentence answers the question (index/answers.py);
    None when the model did not read this passage."""
    answers: bool = False
    """The model read it and its probability reaches the model's threshold."""


def _shared_tokens(text: str) -> set[str]:
    """Numbers and Latin-script words: what a question and a passage in two languages may share."""
    return {t.casefold() for t in _SHARED.findall(text)}


@functools.lru_cache(maxsize=4096)
def _sentence_terms(text: str, language: str) -> tuple[tuple[int, int, frozenset[str]], ...]:
    """Each sentence of a passage with its terms; cached, since popular passages come back often."""
    return tuple(
        (start, end, frozenset(terms(text[start:end], language)) | _shared_tokens(text[start:end]))
        for start, end in sentences(text, language)
    )


def _span(row: PassageRow, start: int, end: int) -> Highlight:
    return Highlight(row.text[start:end], row.char_start + start, row.char_start + end)


def lexical_highlight(row: PassageRow, question: str, language: str | None) -> Highlight:
    """The passage sentence sharing the most question terms (the first sentence when none does).

    Terms are stemmed in each side's language; numbers and Latin-script names also count across
    languages, so an English passage can be highlighted for a Chinese question about "H20".
    """
    q = set(terms(question, language)) | _shared_tokens(question)
    best = max(
        _sentence_terms(row.text, row.language),
        key=lambda s: len(q & s[2]) / (1.0 + math.log1p(len(s[2]))),
    )  # max keeps the first of equals
    return _span(row, best[0], best[1])


def sentence_highlight(row: PassageRow, char_start: int, char_end: int, score: float) -> Highlight:
    """The stored sentence `[char_start, char_end)` (article offsets) of a passage, as a highlight
    (`score`: its inner product with the question)."""
    start = max(char_start - row.char_start, 0)
    end = min(char_end - row.char_start, len(row.text))
    return Highlight(row.text[start:end], row.char_start + start, row.char_start + end, round(score, 6))
