"""Retrieval: dense (language-fair) and lexical (BM25) candidates, fused, one passage per article, cited.

Lexical evidence only counts for passages in the question's own language: BM25 cannot match a
Chinese question against an English passage, and letting it vote there drags cross-language
answers down (the baseline in ../shared/eval loses 8–12 MRR points that way).
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt
import sentencex
from index.language import detect_query_language

from index.lexical import terms
from index.service import SearchService, ServingState
from index.store import Filters, PassageRow, match_expression

Mode = Literal["hybrid", "dense", "lexical"]

RRF_K = 60.0
DENSE_WEIGHT = 1.0
LEXICAL_WEIGHT = 0.5
MIN_CANDIDATES = 100


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
    if qvec is None and query.mode != "lexical":
        state, qvec = service.encode_query(query.text)
    fairness = service.config.fairness if query.fairness is None else query.fairness
    need = (query.offset + query.top_k) * max(query.per_article, 1)
    k = max(MIN_CANDIDATES, need * 4)
    with service.lock.read():
        if state is not service.state:  # a rebuild switched generations while we embedded
            state = service.state
            if qvec is not None:
                qvec = state.embedder.encode_queries([query.text])[0]
        qlang = query.language or _query_language(query.text, state)
        allowed = None
        if not query.filters.empty:
            allowed = service.store.filtered_ids(state.generation, query.filters)
        dense: dict[int, float] = {}
        lexical: dict[int, float] = {}
        lex_lang: dict[int, str] = {}
        if qvec is not None and (allowed is None or len(allowed)):
            dense = _dense(state, qvec, qlang, k, allowed, fairness)
        if query.mode != "dense":
            q_terms = list(dict.fromkeys(terms(query.text, qlang)))
            if q_terms:
                for pid, s, lang in service.store.lexical(
                    match_expression(q_terms), state.generation, query.filters, k
                ):
                    lexical[pid] = s
                    lex_lang[pid] = lang
        fused = _fuse(query.mode, dense, lexical, lex_lang, qlang)
        rows = service.store.passages([pid for pid, _ in fused[: max(k, need * 8)]])
    ranked = _apply_recency(fused, rows, query.recency_half_life_days)
    picked: list[tuple[int, float]] = []
    per_article: dict[str, int] = {}
    for pid, score in ranked:
        row = rows.get(pid)
        if row is None:
            continue
        if per_article.get(row.article_id, 0) >= query.per_article:
            continue
        per_article[row.article_id] = per_article.get(row.article_id, 0) + 1
        picked.append((pid, score))
        if len(picked) > query.offset + query.top_k:
            break
    page = picked[query.offset : query.offset + query.top_k]
    hits = [
        Hit(
            rank=query.offset + i + 1,
            score=round(float(score), 6),
            passage=rows[pid],
            highlight=highlight(rows[pid], query.text, qlang),
            dense_score=dense.get(pid),
            lexical_score=lexical.get(pid),
        )
        for i, (pid, score) in enumerate(page)
    ]
    return SearchOutcome(
        query=query.text,
        hits=hits,
        took_ms=round((time.perf_counter() - t0) * 1000, 3),
        generation=state.generation,
        query_language=qlang,
        has_more=len(picked) > query.offset + query.top_k,
    )


def _query_language(text: str, state: ServingState) -> str | None:
    lang, _conf = detect_query_language(text, state.means.languages or None)
    return lang


def _dense(
    state: ServingState,
    qvec: npt.NDArray[np.float32],
    qlang: str | None,
    k: int,
    allowed: npt.NDArray[np.int64] | None,
    fairness: bool,
) -> dict[int, float]:
    if fairness and state.means.global_mean is not None:
        q = state.means.centre_query(qvec, qlang)
        offsets = state.means.offsets(q, state.vectors.lang_slots)
    else:
        q, offsets = qvec, None
    scores, ids = state.vectors.search(q, k, lang_offsets=offsets, allowed=allowed)
    return {int(i): float(s) for i, s in zip(ids, scores, strict=True)}


def _fuse(
    mode: Mode,
    dense: dict[int, float],
    lexical: dict[int, float],
    lex_lang: dict[int, str],
    qlang: str | None,
) -> list[tuple[int, float]]:
    if mode == "dense":
        return sorted(dense.items(), key=lambda x: -x[1])
    if mode == "lexical":
        return sorted(lexical.items(), key=lambda x: -x[1])
    scores: dict[int, float] = {}
    for rank, (pid, _) in enumerate(sorted(dense.items(), key=lambda x: -x[1])):
        scores[pid] = DENSE_WEIGHT / (RRF_K + rank + 1)
    for rank, (pid, _) in enumerate(sorted(lexical.items(), key=lambda x: -x[1])):
        if qlang is not None and lex_lang.get(pid) != qlang:
            continue
        scores[pid] = scores.get(pid, 0.0) + LEXICAL_WEIGHT / (RRF_K + rank + 1)
    return sorted(scores.items(), key=lambda x: -x[1])


def _apply_recency(
    fused: list[tuple[int, float]], rows: dict[int, PassageRow], half_life_days: float | None
) -> list[tuple[int, float]]:
    if not half_life_days:
        return fused
    now = dt.datetime.now(dt.UTC)
    out: list[tuple[int, float]] = []
    for pid, s in fused:
        row = rows.get(pid)
        boost = 1.0
        if row is not None and row.published_at:
            try:
                when = dt.datetime.fromisoformat(row.published_at)
                if when.tzinfo is None:
                    when = when.replace(tzinfo=dt.UTC)
                age = max((now - when).total_seconds() / 86400, 0.0)
                boost = 0.5 + 0.5 * math.pow(0.5, age / half_life_days)
            except ValueError:
                boost = 1.0
        out.append((pid, s * boost))
    return sorted(out, key=lambda x: -x[1])


def highlight(row: PassageRow, question: str, language: str | None) -> Highlight:
    """The passage sentence sharing the most question terms (the first sentence when none does)."""
    q = set(terms(question, language))
    best: tuple[float, int, int] | None = None
    for b in sentencex.get_sentence_boundaries(row.language if row.language != "und" else "en", row.text):
        start, end = int(b["start_index"]), int(b["end_index"])
        seg = row.text[start:end]
        stripped = seg.strip()
        if not stripped:
            continue
        start += len(seg) - len(seg.lstrip())
        end = start + len(stripped)
        st = set(terms(stripped, row.language))
        score = len(q & st) / (1.0 + math.log1p(len(st)))
        if best is None or score > best[0]:
            best = (score, start, end)
    if best is None:
        best = (0.0, 0, len(row.text))
    _, s, e = best
    return Highlight(row.text[s:e], row.char_start + s, row.char_start + e)


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
