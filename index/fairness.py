"""Cross-language fairness: take language identity out of dense scores.

Multilingual encoders place every text near its language's centroid, so a question ranks passages
of its own language above better answers in another (Libovický et al., 2020). Three measured
steps (bench/quality.py; figures in bench/results/quality.md) remove that bias:

1. Language means from the corpus. We score `(q - μ_Lq)·(p - μ_Lp)` instead of `q·p`: the query is
   centred by its language's mean and `q'·μ_Lp` is a per-language constant subtracted through the
   language slot of each stored vector (see `index/vectors.py`), so FAISS still does one exact
   inner-product search. Means come from the indexed passages (per-language vector sums kept in
   the store's `lang_stats` in the same transaction as every write), shrunk towards the global
   mean with a pseudo-count of `PRIOR_WEIGHT` passages so that a language with a handful of
   passages is not centred on its few topics.
2. Language directions from a reference table. A language with few passages has a mean that is
   mostly topic, and a question may be in a language the corpus lacks. `data/<model>.npz` holds,
   per model (`python -m citesearch.index.fairness` rebuilds it; needs babel), the mean embedding of each
   of the 47 news languages of `index/language.py` over the same ~100 short CLDR phrases
   (country, language and currency names, months and days: the same content in every language,
   so the differences between means are language, not topic). For each query the span of the
   directions of the corpus languages and of the query's language is projected out of the query (a symmetric projector Π: `(Πq)·(Πx) = (Πq)·x`, so the passage side
   needs nothing stored). The table also names the question's language: the nearest reference
   mean among the corpus languages and lingua's guess.
3. Renormalisation. The centred, projected passage `Π(p - μ_L)` is shorter for passages close to
   their language's mean; cosine instead of inner product ranks them fairly. Its norm depends on
   the means, which move with every write, so it is computed at query time for the FAISS
   candidates only (their stored vectors, reconstructed), never over the corpus.

A model without a reference table gets steps 1 and 3 (language from lingua alone).
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from citesearch.index.language import NEWS_LANGUAGES, detect_query_language, primary_subtag
from citesearch.index.vectors import LANG_SLOTS

PRIOR_WEIGHT = 32.0
"""Pseudo-count pulling a rare language's mean towards the global mean."""

SURE_LANGUAGE = 0.7
"""Without a query vector, lingua's guess of a language absent from the corpus is kept only when this sure."""

REFERENCE_DIR = Path(__file__).resolve().parent / "data"
"""Reference tables: `<model base name>.npz` with `languages` and `means` (one row per language)."""

Vec = npt.NDArray[np.float32]


@dataclass(frozen=True)
class LanguageMeans:
    """Per-language mean passage vectors of one generation."""

    means: dict[str, Vec]
    counts: dict[str, int]
    global_mean: Vec | None

    @classmethod
    def from_stats(
        cls, stats: dict[str, tuple[int, npt.NDArray[np.float64]]], prior: float = PRIOR_WEIGHT
    ) -> LanguageMeans:
        """Shrunk means from per-language (count, vector sum); languages with no passage are absent."""
        stats = {lang: (n, v) for lang, (n, v) in stats.items() if n > 0}
        total = sum(n for n, _ in stats.values())
        if total == 0:
            return cls({}, {}, None)
        g = np.sum(np.stack([v for _, v in stats.values()]), axis=0) / total
        means = {lang: ((v + prior * g) / (n + prior)).astype(np.float32) for lang, (n, v) in stats.items()}
        return cls(means, {lang: n for lang, (n, _) in stats.items()}, g.astype(np.float32))

    @property
    def languages(self) -> list[str]:
        """Languages present, most passages first."""
        return sorted(self.counts, key=lambda k: (-self.counts[k], k))

    def mean_for(self, language: str | None) -> Vec | None:
        """The (shrunk) mean of a corpus language; the global mean for any other; None when empty."""
        if self.global_mean is None:
            return None
        return self.means.get(language or "", self.global_mean)

    def centre_query(self, q: Vec, language: str | None) -> Vec:
        """The query minus its language's mean (the global mean when the language is absent), renormalised."""
        mu = self.mean_for(language)
        if mu is None:
            return q
        return _unit(q - mu, q)

    def offsets(self, q: Vec, slots: dict[str, int]) -> Vec:
        """Per-slot constants `q·μ_L` to subtract from the scores of language L's passages."""
        out = np.zeros(LANG_SLOTS, dtype=np.float32)
        for lang, slot in slots.items():
            mu = self.means.get(lang)
            if mu is not None:
                out[slot] = float(q @ mu)
        return out


def _unit(v: npt.NDArray[np.floating], fallback: Vec) -> Vec:
    norm = float(np.linalg.norm(v))
    return (v / norm).astype(np.float32) if norm > 1e-12 else fallback


# ---- reference language directions ----------------------------------------------------------------


@dataclass(frozen=True, eq=False)  # identity equality and hash: `basis` caches per table
class Reference:
    """A model's reference language means (same content in every language)."""

    languages: tuple[str, ...]
    means: npt.NDArray[np.float32]  # (languages, dim)
    directions: npt.NDArray[np.float32]  # means minus their average

    def index(self, language: str | None) -> int | None:
        """The row of a language (by primary subtag), or None."""
        if not language:
            return None
        try:
            return self.languages.index(primary_subtag(language))
        except ValueError:
            return None

    def nearest(self, q: Vec, candidates: Collection[str]) -> str | None:
        """The candidate whose reference mean is nearest to `q` (Euclidean), or None when none is known."""
        rows = [(c, i) for c in candidates if (i := self.index(c)) is not None]
        if not rows:
            return None
        d = np.sum((self.means[[i for _, i in rows]] - q) ** 2, axis=1)
        return rows[int(np.argmin(d))][0]

    @functools.lru_cache(maxsize=256)  # noqa: B019 - a handful of tables, each kept for the process
    def basis(self, languages: frozenset[str]) -> npt.NDArray[np.float32] | None:
        """An orthonormal basis (rows) of the span of the directions of `languages`, None when empty."""
        rows = sorted({i for lang in languages if (i := self.index(lang)) is not None})
        if not rows:
            return None
        a = self.directions[rows].astype(np.float64)
        _, s, vt = np.linalg.svd(a, full_matrices=False)
        keep = s > 1e-6 * max(float(s[0]), 1e-12)
        return vt[keep].astype(np.float32)


def model_key(model_id: str) -> str:
    """The reference table name of a model: its base name ('multilingual-e5-small@...' -> that)."""
    base = model_id.split("@", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    return re.sub(r"[^A-Za-z0-9._-]+", "-", base).lower()


@functools.lru_cache(maxsize=8)
def load_reference(model_id: str, dim: int) -> Reference | None:
    """The reference table of a model, or None when none is shipped (or its dimension differs)."""
    path = REFERENCE_DIR / f"{model_key(model_id)}.npz"
    try:
        with np.load(path, allow_pickle=False) as data:
            languages = tuple(str(x) for x in data["languages"])
            means = np.asarray(data["means"], dtype=np.float32)
    except (OSError, KeyError, ValueError):
        return None
    if means.ndim != 2 or means.shape[1] != dim or means.shape[0] != len(languages):
        return None
    return Reference(languages, means, (means - means.mean(axis=0)).astype(np.float32))


# ---- per-query preparation --------------------------------------------------------------------------


@dataclass(frozen=True)
class FairQuery:
    """A query ready for the FAISS search, and what is needed to renormalise candidates afterwards."""

    vector: Vec  # Π(q - μ_Lq), unit length
    offsets: Vec | None  # per-slot q'·μ_L
    basis: npt.NDArray[np.float32] | None  # rows spanning the projected-out language directions
    means: LanguageMeans

    def transform(
        self, vectors: npt.NDArray[np.float32], languages: Sequence[str]
    ) -> npt.NDArray[np.float32]:
        """Each `Π(p - μ_L)`, unit length: stored vectors in the space the fair query lives in."""
        if len(vectors) == 0:
            return np.zeros((0, len(self.vector)), dtype=np.float32)
        g = self.means.global_mean
        x: npt.NDArray[np.float32] = vectors.astype(np.float32)
        if g is not None:
            rows = {lang: i for i, lang in enumerate(dict.fromkeys(languages))}
            table = np.stack([self.means.means.get(lang, g) for lang in rows])
            x = x - table[[rows[lang] for lang in languages]]
        if self.basis is not None:
            x = (x - (x @ self.basis.T) @ self.basis).astype(np.float32)
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        out: npt.NDArray[np.float32] = (x / np.maximum(norms, 1e-6)).astype(np.float32)
        return out

    def rescore(self, vectors: npt.NDArray[np.float32], languages: Sequence[str]) -> npt.NDArray[np.float32]:
        """Cosine of the query with each `Π(p - μ_L)`: the fair score of stored passage vectors."""
        if len(vectors) == 0:
            return np.zeros(0, dtype=np.float32)
        out: npt.NDArray[np.float32] = (self.transform(vectors, languages) @ self.vector).astype(np.float32)
        return out


def identify_query_language(
    text: str,
    qvec: Vec | None,
    means: LanguageMeans,
    reference: Reference | None,
    lingua_guess: tuple[str | None, float] | None = None,
) -> tuple[str | None, bool]:
    """The question's language, checked against the corpus languages in embedding space, and whether it is certain.

    With a reference table and a query vector: the nearest reference mean among the corpus
    languages and lingua's own (unrestricted) guess, so a question in a language absent from the
    corpus keeps its language. On XQuAD questions this names the language right 99.2% of the time
    with the 12 languages in the corpus and 96.1% with English alone (lingua alone: 96.0%;
    lingua restricted to the corpus languages: 97.5% and 7.7%). Without the table or a vector
    (lexical mode): lingua's guess when it is a corpus language or lingua is at least
    SURE_LANGUAGE sure, else lingua restricted to the corpus languages (96.9% and 95.1%).

    Certain: lingua's own guess names the chosen language too. When the two disagree the search
    lets no lexical evidence count, since it might be in the wrong language: on XQuAD the
    cross-lingual questions misread as English were the only ones where hybrid fell below dense.
    `lingua_guess`: lingua's unrestricted (language, confidence) for `text` when already computed.
    """
    guess, conf = lingua_guess if lingua_guess is not None else detect_query_language(text)
    corpus = means.languages
    picked: str | None
    if reference is None or qvec is None:
        # Without the embedding check: lingua's guess when it is a corpus language or lingua is
        # sure (a question in a language the corpus lacks), else lingua among the corpus languages.
        picked = match_corpus_language(guess, corpus)
        if corpus and (picked not in corpus and conf < SURE_LANGUAGE):
            picked = detect_query_language(text, corpus)[0] or picked
    else:
        candidates = set(corpus)
        if guess is not None:
            candidates.add(match_corpus_language(guess, corpus) or guess)
        picked = reference.nearest(qvec, candidates)
        if picked is None:
            picked = match_corpus_language(guess, corpus)
    certain = picked is not None and guess is not None and primary_subtag(picked) == guess
    return picked, certain


def match_corpus_language(code: str | None, corpus: Sequence[str]) -> str | None:
    """A corpus tag with the same primary subtag as `code` (so 'pt' finds 'pt-BR'), else `code`."""
    if code is None:
        return None
    if code in corpus:
        return code
    same = sorted(c for c in corpus if primary_subtag(c) == code)
    return same[0] if same else code


def prepare_query(
    qvec: Vec,
    language: str | None,
    means: LanguageMeans,
    slots: dict[str, int],
    reference: Reference | None,
) -> FairQuery:
    """Centre the query by its language's mean, project out the languages in play, and the slot offsets."""
    mu = means.mean_for(language)
    x = qvec.astype(np.float32) if mu is None else (qvec - mu).astype(np.float32)
    basis = None
    if reference is not None and means.languages:
        basis = reference.basis(frozenset([*means.languages, *([language] if language else [])]))
    if basis is not None:
        x = x - (basis.T @ (basis @ x))
    q = _unit(x, qvec)
    offsets = means.offsets(q, slots) if mu is not None else None
    return FairQuery(q, offsets, basis, means)


# ---- building a reference table (developers only: needs `pip install babel`) ---------------------------


def reference_phrases(language: str) -> list[str]:
    """About 100 short phrases in `language` with the same content in every language (CLDR via babel)."""
    from babel import Locale  # type: ignore[import-not-found, unused-ignore]
    from babel.lists import format_list  # type: ignore[import-not-found, unused-ignore]

    en: Any = Locale.parse("en")
    loc: Any = Locale.parse(language)
    keys: dict[str, list[str]] = {
        "territories": sorted(str(k) for k in en.territories if str(k).isalpha() and len(str(k)) == 2),
        "languages": sorted(str(k) for k in en.languages if len(str(k)) == 2),
        "currencies": sorted(str(k) for k in en.currencies)[:150],
    }
    out: list[str] = []
    for table, names in keys.items():
        values = [getattr(loc, table).get(k) for k in names]
        for i in range(0, len(values), 6):
            group = [v for v in values[i : i + 6] if v]
            if len(group) >= 2:
                out.append(str(format_list(group, locale=loc)))
    months = loc.months["format"]["wide"]
    days = loc.days["format"]["wide"]
    out.append(str(format_list([months[i] for i in range(1, 13)], locale=loc)))
    out.append(str(format_list([days[i] for i in range(7)], locale=loc)))
    return out


def build_reference(model: str | None = None) -> Path:
    """Embed the reference phrases of every news language with a model; write `data/<model>.npz`."""
    from citesearch.embeddings import load_embedder

    emb = load_embedder(model)
    languages = list(NEWS_LANGUAGES)
    means = np.stack([emb.encode_passages(reference_phrases(lang)).mean(axis=0) for lang in languages])
    REFERENCE_DIR.mkdir(parents=True, exist_ok=True)
    path = REFERENCE_DIR / f"{model_key(emb.model_id)}.npz"
    np.savez(path, languages=np.array(languages), means=means.astype(np.float32), model_id=emb.model_id)
    return path


if __name__ == "__main__":  # python -m citesearch.index.fairness [MODEL]: (re)build a model's reference table
    print(build_reference(sys.argv[1] if len(sys.argv) > 1 else None))
