"""Retrieval: language-fair dense candidates and BM25 candidates, fused, one passage per article, cited.

Dense (see `index/fairness.py`): the question is centred by its language's mean, the directions of
the languages in play are projected out, and FAISS returns the top candidates by inner product
with per-language offsets; those candidates are then rescored by the cosine with their centred,
projected vectors (reconstructed from the index: a hundred vectors, never the corpus).

Lexical: SQLite FTS5 BM25 over stemmed terms (`index/lexical.py`). In hybrid mode it only ever
counts for passages in the question's own language, and only to reorder those passages among
themselves: the passages of the question's language are sorted by normalised dense plus
normalised BM25 score and take, in that order, the dense scores that language's passages had. So
lexical evidence picks *which* same-language passages fill the places dense retrieval gave that
language, never *how many* places it gets: it cannot push an answer in another language down.
Measured on XQuAD (bench/quality.py): naive fusion costs the mixed-language setting 14-45 MRR
points, this costs nothing there and gives monolingual questions +4.6.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import numpy.typing as npt
import regex
import sentencex

from citesearch.index.fairness import (
    FairQuery,
    identify_query_language,
    load_reference,
    match_corpus_language,
    prepare_query,
)
from citesearch.index.language import detect_query_language
from citesearch.index.lexical import terms
from citesearch.index.service import SearchService, ServingState
from citesearch.index.store import Filters, PassageRow, match_expression

Mode = Literal["hybrid", "dense", "lexical"]
HighlightMode = Literal["lexical", "semantic"]

MIN_CANDIDATES = 100
"""Dense and lexical candidates per search (more when a deep page or per_article needs them)."""
LEXICAL_WEIGHT = 1.0
"""Weight of max-normalised BM25 against normalised dense score inside the question's language."""
COMMON_TERM_SHARE = 1 / 3
"""Query terms found in more than this share of passages are left out of BM25: their IDF is at most
log 2 (a tenth of a rare term's), yet scoring their postings is most of BM25's cost in a large corpus."""
COMMON_TERM_MIN_PASSAGES = 1_000
"""Below this many passages every term is kept (BM25 is cheap there)."""
NORM_DEPTH = 100
"""Dense scores are normalised between the best and the NORM_DEPTH-th of the first FAISS candidates."""


@dataclass(frozen=True)
class SearchQuery:
    """One question and how to answer it."""

    text: str
    top_k: int = 5
    mode: Mode = "hybrid"
    filters: Filters = field(default_factory=Filters)
    offset: int = 0
    per_article: int = 1
    language: str | None = None
    recency_half_life_days: float | None = None
    fairness: bool | None = None
    highlight: HighlightMode = "lexical"


@dataclass(frozen=True)
class Highlight:
    """The sentence(s) of a passage that best answer the question, with offsets into the article."""

    text: str
    char_start: int
    char_end: int


@dataclass(frozen=True)
class Hit:
    """One ranked, citable passage."""

    rank: int
    score: float
    passage: PassageRow
    highlight: Highlight
    dense_score: float | None
    lexical_score: float | None


@dataclass(frozen=True)
class SearchOutcome:
    """Ranked hits plus what the caller needs to show and page them."""

    query: str
    hits: list[Hit]
    took_ms: float
    generation: int
    query_language: str | None
    has_more: bool


def run_search(
    service: SearchService, query: SearchQuery, query_vector: npt.NDArray[np.float32] | None = None
) -> SearchOutcome:
    """Answer a question against the serving generation (`query_vector`: its embedding, if already known)."""
    t0 = time.perf_counter()
    state: ServingState = service.state
    qvec = query_vector
    fairness = service.config.fairness if query.fairness is None else query.fairness
    need = (query.offset + query.top_k) * max(query.per_article, 1)
    k = max(MIN_CANDIDATES, need * 4)
    early: _EarlyLexical | None = None
    if qvec is None and (query.mode != "lexical" or query.highlight == "semantic"):
        pending = None
        if query.mode == "hybrid":
            # BM25 in the question's likely language runs on the other core while the encoder runs.
            pending = _POOL.submit(_early_lexical, service, state, query, k)
        state, qvec = service.encode_query(query.text)
        # Collected before taking the read lock: a writer queued between the two could otherwise
        # hold the early search's lock request behind ours.
        early = pending.result() if pending is not None else None
    with service.lock.read():
        if state is not service.state:  # a rebuild switched generations while we embedded
            state = service.state
            if qvec is not None:
                qvec = state.embedder.encode_queries([query.text])[0]
        means = state.means
        reference = load_reference(state.embedder.model_id, state.vectors.dim) if fairness else None
        qlang: str | None
        if query.language:
            qlang, certain = query.language, True
        else:
            qlang, certain = identify_query_language(
                query.text, qvec, means, reference, early.guess if early is not None else None
            )
        allowed = None
        if not query.filters.empty:
            allowed = service.store.filtered_ids(state.generation, query.filters)
        dense: dict[int, float] = {}
        langs: dict[int, str] = {}
        dense_order: list[int] = []
        fair: FairQuery | None = None
        in_play = set(query.filters.languages) if query.filters.languages else set(means.languages)
        if qvec is not None and fairness and means.global_mean is not None and in_play != {qlang}:
            # Only when passages of another language than the question's can compete: within one
            # language the correction has nothing to even out (XQuAD monolingual: dense 92.7
            # without it, 91.9 with it).
            fair = prepare_query(qvec, qlang, means, state.vectors.lang_slots, reference)
        if qvec is not None and query.mode != "lexical" and (allowed is None or len(allowed)):
            dense, langs, dense_order = _dense(state, qvec, qlang, k, allowed, fair)
        lexical: dict[int, float] = {}
        if query.mode == "lexical" or (query.mode == "hybrid" and certain):
            if early is not None and early.generation == state.generation and early.language == qlang:
                lexical = early.scores
            else:
                lexical = _lexical(service, state, query, qlang, k)
        if query.mode == "dense":
            fused = _ranked(dense)
        elif query.mode == "lexical":
            fused = _ranked(lexical)
        else:
            missing = [pid for pid in lexical if pid not in dense]
            if missing and qvec is not None:
                try:
                    more, more_langs = _score(state, qvec, fair, missing)
                except RuntimeError:  # not in the index (cannot happen under the read lock)
                    more, more_langs = {}, {}
                dense.update(more)
                langs.update(more_langs)
            fused = _fuse(dense, dense_order, lexical, langs, qlang)
        heads = service.store.passage_heads([pid for pid, _ in fused[: max(k, need * 8)]])
        ranked = _apply_recency(fused, heads, query.recency_half_life_days)
        picked: list[tuple[int, float]] = []
        per_article: dict[str, int] = {}
        for pid, score in ranked:
            head = heads.get(pid)
            if head is None:
                continue
            if per_article.get(head[0], 0) >= query.per_article:
                continue
            per_article[head[0]] = per_article.get(head[0], 0) + 1
            picked.append((pid, score))
            if len(picked) > query.offset + query.top_k:
                break
        page = picked[query.offset : query.offset + query.top_k]
        rows = service.store.passages([pid for pid, _ in page])  # text is read for the page only
    page = [(pid, score) for pid, score in page if pid in rows]
    page_rows = [rows[pid] for pid, _ in page]
    if query.highlight == "semantic" and qvec is not None:
        lights = semantic_highlights(state, page_rows, qvec)
    else:
        lights = [highlight(r, query.text, qlang) for r in page_rows]
    hits = [
        Hit(
            rank=query.offset + i + 1,
            score=round(float(score), 6),
            passage=row,
            highlight=light,
            dense_score=None if pid not in dense else round(dense[pid], 6),
            lexical_score=None if pid not in lexical else round(lexical[pid], 6),
        )
        for i, ((pid, score), row, light) in enumerate(zip(page, page_rows, lights, strict=True))
    ]
    return SearchOutcome(
        query=query.text,
        hits=hits,
        took_ms=round((time.perf_counter() - t0) * 1000, 3),
        generation=state.generation,
        query_language=qlang,
        has_more=len(picked) > query.offset + query.top_k,
    )


def _ranked(scores: dict[int, float]) -> list[tuple[int, float]]:
    """Best first; ties by passage id, so equal scores page the same way every time."""
    return sorted(scores.items(), key=lambda x: (-x[1], x[0]))


def _slot_languages(state: ServingState) -> dict[int, str]:
    """Slot -> language for slots that hold exactly one language (the last slot may be shared)."""
    by_slot: dict[int, list[str]] = {}
    for lang, slot in state.vectors.lang_slots.items():
        by_slot.setdefault(slot, []).append(lang)
    return {slot: langs[0] for slot, langs in by_slot.items() if len(langs) == 1}


def _score(
    state: ServingState, qvec: npt.NDArray[np.float32], fq: FairQuery | None, ids: Sequence[int]
) -> tuple[dict[int, float], dict[int, str]]:
    """Dense scores of stored passages (fair cosine, or plain inner product) and their languages."""
    vecs, slots = state.vectors.reconstruct(np.asarray(ids, dtype=np.int64))
    by_slot = _slot_languages(state)
    langs = [by_slot.get(int(s), "") for s in slots]
    scores = vecs @ qvec if fq is None else fq.rescore(vecs, langs)
    return (
        {int(i): float(s) for i, s in zip(ids, scores, strict=True)},
        {int(i): lang for i, lang in zip(ids, langs, strict=True)},
    )


def _dense(
    state: ServingState,
    qvec: npt.NDArray[np.float32],
    qlang: str | None,
    k: int,
    allowed: npt.NDArray[np.int64] | None,
    fair: FairQuery | None,
) -> tuple[dict[int, float], dict[int, str], list[int]]:
    """({passage id: dense score}, {passage id: language}, ids in FAISS order)."""
    if fair is None:
        _, ids = state.vectors.search(qvec, k, allowed=allowed)
    else:
        _, ids = state.vectors.search(fair.vector, k, lang_offsets=fair.offsets, allowed=allowed)
    order = [int(i) for i in ids]
    scores, langs = _score(state, qvec, fair, order)
    return scores, langs, order


@dataclass(frozen=True)
class _EarlyLexical:
    generation: int
    language: str | None
    guess: tuple[str | None, float]  # lingua's, reused to identify the question's language
    scores: dict[int, float]


_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="early-lexical")


def _early_lexical(
    service: SearchService, state: ServingState, query: SearchQuery, k: int
) -> _EarlyLexical | None:
    """BM25 in the language the question will most likely be given (lingua's guess, or the caller's).

    Used only when the language finally chosen (with the query vector) is the same and no
    rebuild switched generations meanwhile; otherwise the search runs BM25 again.
    """
    with service.lock.read():
        if service.state is not state:
            return None
        guess = detect_query_language(query.text)
        qlang = query.language or match_corpus_language(guess[0], state.means.languages)
        return _EarlyLexical(state.generation, qlang, guess, _lexical(service, state, query, qlang, k))


def _lexical(
    service: SearchService, state: ServingState, query: SearchQuery, qlang: str | None, k: int
) -> dict[int, float]:
    """BM25 candidates; in hybrid mode only passages in the question's language (any when unknown)."""
    q_terms = list(dict.fromkeys(terms(query.text, qlang)))
    if not q_terms:
        return {}
    common = service.store.common_terms(q_terms, COMMON_TERM_SHARE, COMMON_TERM_MIN_PASSAGES)
    if common and len(common) < len(q_terms):
        q_terms = [t for t in q_terms if t not in common]
    filters = query.filters
    if query.mode == "hybrid" and qlang is not None:
        if filters.languages and qlang not in filters.languages:
            return {}
        filters = replace(filters, languages=(qlang,))
    rows = service.store.lexical(match_expression(q_terms), state.generation, filters, k)
    return {pid: s for pid, s, _lang in rows}


def _fuse(
    dense: dict[int, float],
    dense_order: list[int],
    lexical: dict[int, float],
    langs: dict[int, str],
    qlang: str | None,
) -> list[tuple[int, float]]:
    """Reorder the question-language passages by dense+BM25 inside the places dense gave them.

    The pool is every candidate in the question's language (every candidate when the language is
    unknown); a dense candidate that BM25 did not return counts as BM25 0. Normalisation uses the
    best lexical score and the first NORM_DEPTH dense candidates, which do not depend on how many
    candidates a deep page asks for, so pages stay consistent.
    """
    if not lexical:
        return _ranked(dense)
    if not dense:
        return _ranked(lexical)
    head = [dense[i] for i in dense_order[:NORM_DEPTH] if i in dense] or list(dense.values())
    hi, lo = max(head), min(head)
    span = hi - lo if hi - lo > 1e-9 else 1.0
    lmax = max(lexical.values())
    lmax = lmax if lmax > 0 else 1.0
    pool = [pid for pid in dense if pid in lexical or qlang is None or langs.get(pid) == qlang]
    if not pool:
        return _ranked(dense)
    fused_key = {
        pid: (dense[pid] - lo) / span + LEXICAL_WEIGHT * lexical.get(pid, 0.0) / lmax for pid in pool
    }
    order = sorted(pool, key=lambda p: (-fused_key[p], p))
    slots = sorted((dense[p] for p in pool), reverse=True)
    out = dict(dense)
    for pid, s in zip(order, slots, strict=True):
        out[pid] = s
    return _ranked(out)


def _apply_recency(
    fused: list[tuple[int, float]],
    heads: dict[int, tuple[str, str | None]],
    half_life_days: float | None,
) -> list[tuple[int, float]]:
    if not half_life_days:
        return fused
    now = dt.datetime.now(dt.UTC)
    out: list[tuple[int, float]] = []
    for pid, s in fused:
        head = heads.get(pid)
        published = head[1] if head is not None else None
        boost = 1.0
        if published:
            try:
                when = dt.datetime.fromisoformat(published)
                if when.tzinfo is None:
                    when = when.replace(tzinfo=dt.UTC)
                age = max((now - when).total_seconds() / 86400, 0.0)
                boost = 0.5 + 0.5 * math.pow(0.5, age / half_life_days)
            except ValueError:
                boost = 1.0
        out.append((pid, s * boost if s >= 0 else s / boost))
    return _ranked(dict(out))


# ---- highlights -----------------------------------------------------------------------------------

_SHARED = regex.compile(r"\p{N}+|[\p{Latin}\p{N}][\p{Latin}\p{N}\p{M}]+")


def _sentences(row: PassageRow) -> list[tuple[int, int]]:
    """[start, end) of each non-blank sentence of a passage, relative to the passage, trimmed."""
    return _sentences_of(row.text, row.language)


def _sentences_of(text: str, language: str | None) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    lang = language if language and language != "und" else "en"
    for b in sentencex.get_sentence_boundaries(lang, text):
        start, end = int(b["start_index"]), int(b["end_index"])
        seg = text[start:end]
        stripped = seg.strip()
        if not stripped:
            continue
        start += len(seg) - len(seg.lstrip())
        out.append((start, start + len(stripped)))
    return out or [(0, len(text))]


@functools.lru_cache(maxsize=4096)
def _sentence_terms(text: str, language: str) -> tuple[tuple[int, int, frozenset[str]], ...]:
    """Each sentence of a passage with its terms; cached, since popular passages come back often."""
    out = []
    for start, end in _sentences_of(text, language):
        seg = text[start:end]
        out.append((start, end, frozenset(terms(seg, language)) | _shared_tokens(seg)))
    return tuple(out)


def _shared_tokens(text: str) -> set[str]:
    """Numbers and Latin-script words: what a question and a passage in two languages may share."""
    return {t.casefold() for t in _SHARED.findall(text)}


def highlight(row: PassageRow, question: str, language: str | None) -> Highlight:
    """The passage sentence sharing the most question terms (the first sentence when none does).

    Terms are stemmed in each side's language; numbers and Latin-script names also count across
    languages, so an English passage can be highlighted for a Chinese question about "H20".
    """
    q = set(terms(question, language)) | _shared_tokens(question)
    best: tuple[float, int, int] | None = None
    for start, end, st in _sentence_terms(row.text, row.language):
        score = len(q & st) / (1.0 + math.log1p(len(st)))
        if best is None or score > best[0]:
            best = (score, start, end)
    assert best is not None
    _, s, e = best
    return Highlight(row.text[s:e], row.char_start + s, row.char_start + e)


def semantic_highlights(
    state: ServingState, rows: Sequence[PassageRow], qvec: npt.NDArray[np.float32]
) -> list[Highlight]:
    """For each passage, the sentence whose embedding is nearest the question's (one model call for all)."""
    spans = [_sentences(r) for r in rows]
    texts = [r.text[s:e] for r, sp in zip(rows, spans, strict=True) for s, e in sp]
    if not texts:
        return []
    vecs = state.embedder.encode_passages(texts)
    sims = vecs @ qvec
    out: list[Highlight] = []
    i = 0
    for r, sp in zip(rows, spans, strict=True):
        j = int(np.argmax(sims[i : i + len(sp)]))
        s, e = sp[j]
        out.append(Highlight(r.text[s:e], r.char_start + s, r.char_start + e))
        i += len(sp)
    return out


# ---- chatbot context --------------------------------------------------------------------------------


def context_block(hits: Sequence[Hit]) -> tuple[str, list[dict[str, object]]]:
    """A numbered context block for an LLM prompt and the matching citation list."""
    parts: list[str] = []
    citations: list[dict[str, object]] = []
    for i, h in enumerate(hits, start=1):
        p = h.passage
        head = ", ".join(x for x in (p.title, p.source, (p.published_at or "")[:10], p.url) if x)
        parts.append(f"[{i}] {head}\n{p.text}")
        citations.append(
            {
                "label": f"[{i}]",
                "article_id": p.article_id,
                "passage_id": p.id,
                "title": p.title,
                "source": p.source,
                "published_at": p.published_at,
                "url": p.url,
                "char_start": p.char_start,
                "char_end": p.char_end,
            }
        )
    return "\n\n".join(parts), citations


__all__ = [
    "HighlightMode",
    "Mode",
    "SearchQuery",
    "context_block",
    "highlight",
    "run_search",
    "semantic_highlights",
]
