"""Lexical terms for BM25 (SQLite FTS5): words for spaced scripts, character bigrams for CJK and Thai."""

from __future__ import annotations

import unicodedata

import regex

_WORD = regex.compile(r"[\p{L}\p{M}\p{N}]+")
# Scripts written without spaces between words: indexed as overlapping character bigrams.
_UNSPACED = regex.compile(r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}]+")


def terms(text: str, language: str | None = None) -> list[str]:
    """Lower-cased terms of `text`: words, and character bigrams inside unspaced scripts."""
    out: list[str] = []
    norm = unicodedata.normalize("NFKC", text).casefold()
    for word in _WORD.findall(norm):
        pos = 0
        for run in _UNSPACED.finditer(word):
            if run.start() > pos:
                out.append(word[pos : run.start()])
            chunk = run.group()
            if len(chunk) == 1:
                out.append(chunk)
            else:
                out.extend(chunk[i : i + 2] for i in range(len(chunk) - 1))
            pos = run.end()
        if pos < len(word):
            out.append(word[pos:])
    return out


def terms_text(text: str, language: str | None = None) -> str:
    """Terms joined by spaces, as stored in the FTS5 column."""
    return " ".join(terms(text, language))
