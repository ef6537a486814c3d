"""Lexical terms for BM25 (SQLite FTS5): stemmed words for spaced scripts, character bigrams for CJK and Thai.

Words are NFKC-normalised and case-folded, then reduced with the Snowball stemmer of the text's
language when Snowball has one (PyStemmer: Arabic, German, Greek, English, Spanish, Hindi,
Romanian, Russian, Turkish, and 20-odd more); other languages keep whole words. Runs of scripts
written without spaces (Han, kana, Thai, Lao, Khmer, Myanmar) become overlapping character
bigrams (a single character stays a unigram). Vietnamese, whose words are written as space-separated
syllables, also gets syllable bigrams (`thành` + `phố`): +1.0 BM25 MRR@10 on XQuAD-vi, where the same
bigrams for the other languages gave nothing. Questions and passages go through the same function
with their own language, so a question matches passages of its language; the search counts
lexical evidence only there.

`LEXICAL_VERSION` names this scheme: the store keeps the version its terms were written with and
rewrites them (no re-embedding) when it changes.
"""

from __future__ import annotations

import itertools
import threading
import unicodedata

import regex
import Stemmer

from citesearch.index.language import primary_subtag

LEXICAL_VERSION = "2"
"""Bump whenever `terms` changes what it returns for some text: stored terms are then rewritten."""

_WORD = regex.compile(r"[\p{L}\p{M}\p{N}]+")
# Scripts written without spaces between words: indexed as overlapping character bigrams.
_UNSPACED = regex.compile(r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}]+")

# ISO 639-1 code -> Snowball algorithm (PyStemmer's names).
SNOWBALL: dict[str, str] = {
    "ar": "arabic",
    "ca": "catalan",
    "cs": "czech",
    "da": "danish",
    "de": "german",
    "el": "greek",
    "en": "english",
    "es": "spanish",
    "et": "estonian",
    "eu": "basque",
    "fa": "persian",
    "fi": "finnish",
    "fr": "french",
    "ga": "irish",
    "hi": "hindi",
    "hu": "hungarian",
    "hy": "armenian",
    "id": "indonesian",
    "it": "italian",
    "lt": "lithuanian",
    "nb": "norwegian",
    "ne": "nepali",
    "nl": "dutch",
    "nn": "norwegian",
    "no": "norwegian",
    "pl": "polish",
    "pt": "portuguese",
    "ro": "romanian",
    "ru": "russian",
    "sr": "serbian",
    "sv": "swedish",
    "ta": "tamil",
    "tr": "turkish",
    "yi": "yiddish",
}

JOINER = "\ue000"
"""Joins the syllables of a bigram: a private-use character, a token character for the FTS5 tokenizer."""
SYLLABIC = frozenset({"vi"})
"""Languages written in space-separated syllables: adjacent syllables also form a term."""

_local = threading.local()  # Stemmer objects are not thread-safe: one per thread and language


def _stemmer(language: str | None) -> Stemmer.Stemmer | None:
    if not language:
        return None
    algo = SNOWBALL.get(primary_subtag(language))
    if algo is None:
        return None
    cache: dict[str, Stemmer.Stemmer] | None = getattr(_local, "stemmers", None)
    if cache is None:
        cache = _local.stemmers = {}
    st = cache.get(algo)
    if st is None:
        st = cache[algo] = Stemmer.Stemmer(algo, 10_000)
    return st


def terms(text: str, language: str | None = None) -> list[str]:
    """Terms of `text` in order: stemmed lower-case words, and character bigrams inside unspaced scripts."""
    norm = unicodedata.normalize("NFKC", text).casefold()
    words, grams = _words_and_bigrams(norm)
    st = _stemmer(language)
    if st is not None and words:
        words = st.stemWords(words)
    if language and primary_subtag(language) in SYLLABIC and len(words) > 1:
        words = words + [f"{a}{JOINER}{b}" for a, b in itertools.pairwise(words)]
    if not grams:
        return words
    return _interleave(words, grams)


def _words_and_bigrams(norm: str) -> tuple[list[str], list[tuple[int, str]]]:
    """The spaced words of norm, and the bigrams of its unspaced runs with their positions among all terms."""
    words: list[str] = []
    grams: list[tuple[int, str]] = []  # (position in the output, bigram) kept apart from stemming
    for word in _WORD.findall(norm):
        pos = 0
        for run in _UNSPACED.finditer(word):
            if run.start() > pos:
                words.append(word[pos : run.start()])
            chunk = run.group()
            if len(chunk) == 1:
                grams.append((len(words) + len(grams), chunk))
            else:
                grams.extend((len(words) + len(grams), chunk[i : i + 2]) for i in range(len(chunk) - 1))
            pos = run.end()
        if pos < len(word):
            words.append(word[pos:])
    return words, grams


def _interleave(words: list[str], grams: list[tuple[int, str]]) -> list[str]:
    """Words in order with each bigram inserted at its recorded position."""
    out: list[str] = []
    wi = 0
    for at, gram in grams:
        while len(out) < at:
            out.append(words[wi])
            wi += 1
        out.append(gram)
    out.extend(words[wi:])
    return out


def terms_text(text: str, language: str | None = None) -> str:
    """Terms joined by spaces, as stored in the FTS5 column."""
    return " ".join(terms(text, language))
