"""The path of a question: plan, encode, identify the language, dense, lexical, fuse, page, highlight.

`Searcher.search` runs these named stages over a read-only `Snapshot` of the serving state:

- plan: validate the question, size the candidate pools;
- encode: the question's vector from the inference scheduler (questions go before write work),
  while BM25 in the question's likely language runs on the early-lexical pool;
- identify: the question's language (lingua, checked in embedding space; index/fairness.py);
- dense: language-fair FAISS candidates, rescored by the cosine with their centred, projected
  vectors (index/fairness.py);
- lexical: SQLite FTS5 BM25 over stemmed terms (index/lexical.py); in hybrid mode only passages
  in the question's own language count;
- fuse: lexical evidence reorders the question-language passages among the places dense gave
  that language, never how many places it gets, so it cannot push an answer in another language
  down (XQuAD: naive fusion costs the mixed setting 14-45 MRR points, this costs nothing there
  and gives monolingual questions +3.3);
- page: recency, at most `per_article` passages per article, offset and top_k;
- highlight: the answering sentence of each passage (index/highlights.py).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import numpy.typing as npt
import regex

from citesearch.index.answers import Units, read_hits
from citesearch.index.dates import DAY_S, epoch_seconds
from citesearch.index.errors import InvalidQueryError
from citesearch.index.fairness import (
    FairQuery,
    Reference,
    identify_query_language,
    load_reference,
    match_corpus_language,
    prepare_query,
)
from citesearch.index.highlights import Highlight, lexical_highlight, sentence_highlight
from citesearch.index.language import detect_query_language
from citesearch.index.lexical import terms
from citesearch.index.state import Core, ServingState
from citesearch.index.store import Filters, PassageRow, Store

Mode = Literal["hybrid", "dense", "lexical"]
HighlightMode = Literal["lexical", "semantic"]
Vec = npt.NDArray[np.float32]

MIN_CANDIDATES = 100
"""Dense and lexical candidates per search (more when a deep page or per_article needs them)."""
LEXICAL_WEIGHT = 1.0
"""Weight of max-normalised BM25 against normalised dense score inside the question's language."""
COMMON_TERM_SHARE = 1 / 3
"""Query terms found in more than this share of the passages BM25 searches (those in the question's
language, in hybrid mode) are left out of BM25: among those passages their IDF is at most log 2 (a
tenth of a rare term's; FTS5 counts every language, which overrates a language's common words), yet
scoring their postings is most of BM25's cost in a large corpus."""
COMMON_TERM_MIN_PASSAGES = 1_000
"""Below this many passages (in the language searched) every term is kept (BM25 is cheap there)."""
NORM_DEPTH = 100
"""Dense scores are normalised between the best and the NORM_DEPTH-th of the first FAISS candidates."""
EVIDENCE_ARTICLES = 10
"""Articles (the best of the fused ranking, more when the page needs more) whose every passage is
scored by its sentences: which passage of an article is shown is decided among all of them."""
SENTENCE_WEIGHT = 0.5
"""Weight of a passage's best sentence against the passage itself in its score (same query, same space).
0.6 gained XQuAD MRR@10 +0.3 cross-lingual, +0.1 mixed, +0.2 monolingual (with TERM_WEIGHT), but
shows the wrong passage of the seed article for its own question (tests/test_service.py): kept 0.5."""
TERM_WEIGHT = 0.02
"""Weight of a passage's BM25 (over the best among the leading articles' passages) in the sharpened
score, when every candidate is in the question's language: BM25 then also takes part in which
passage an article shows and in the article's score (XQuAD monolingual, one passage per article:
+0.6 MRR@10, chosen on half the questions; see bench/results/quality-r2.md). An IDF overlap of the question's terms read from the store gained
0.3 more for +0.4 ms p50; in language-fair searches either one favours the question's language."""
_HAS_WORD = regex.compile(r"[\p{L}\p{N}]")


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
    highlight: HighlightMode = "semantic"
    answer_hits: int | None = None
    """How many of the page's first hits the answer model reads (semantic highlights; None: the
    configured `answer_hits`; 0: none, every highlight by cosine alone)."""
    read_text: str | None = None
    """The question the answer model reads (None: `text`): a chat follow-up searched together with
    the message before it is read alone, so the sentence chosen answers the follow-up."""


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


@dataclass(frozen=True)
class Plan:
    """A validated question and the sizes its stages work with."""

    query: SearchQuery
    fairness: bool
    k: int  # dense and lexical candidates
    depth: int  # fused candidates whose articles are looked up for paging
    needs_vector: bool


@dataclass(frozen=True)
class Snapshot:
    """What one search reads: the serving state and the store (valid under the read lock)."""

    state: ServingState
    store: Store
    reference: Reference | None


@dataclass(frozen=True)
class Language:
    """The question's language and whether lexical evidence in it can be trusted."""

    code: str | None
    certain: bool


@dataclass(frozen=True)
class EarlyLexical:
    """BM25 run while the question was being encoded, in the language lingua guessed."""

    state: ServingState  # the state it read: every write replaces it, so identity means "no write since"
    language: str | None
    guess: tuple[str | None, float]
    scores: dict[int, float]


@dataclass
class Candidates:
    """Scored candidates of every retriever, and their fused order."""

    dense: dict[int, float] = field(default_factory=dict)
    langs: dict[int, str] = field(default_factory=dict)
    dense_order: list[int] = field(default_factory=list)
    lexical: dict[int, float] = field(default_factory=dict)
    fused: list[tuple[int, float]] = field(default_factory=list)
    fair: FairQuery | None = None


# ---- stages -----------------------------------------------------------------------------------------


def plan(query: SearchQuery, *, max_chars: int, fairness: bool) -> Plan:
    """Validate the question (InvalidQueryError) and size the candidate pools."""
    if not query.text.strip():
        raise InvalidQueryError("query is blank")
    if len(query.text) > max_chars:
        raise InvalidQueryError(f"query is longer than {max_chars} characters")
    if not _HAS_WORD.search(query.text):
        raise InvalidQueryError("query has no letter or digit")
    need = (query.offset + query.top_k) * max(query.per_article, 1)
    k = max(MIN_CANDIDATES, need * 4)
    return Plan(
        query=query,
        fairness=fairness if query.fairness is None else query.fairness,
        k=k,
        depth=max(k, need * 8),
        needs_vector=query.mode != "lexical" or query.highlight == "semantic",
    )


def identify(snap: Snapshot, p: Plan, qvec: Vec | None, early: EarlyLexical | None) -> Language:
    """The question's language: the caller's, else lingua's guess checked against the corpus in embedding space."""
    if p.query.language:
        return Language(p.query.language, True)
    code, certain = identify_query_language(
        p.query.text, qvec, snap.state.means, snap.reference, early.guess if early is not None else None
    )
    return Language(code, certain)


def fair_query(snap: Snapshot, p: Plan, qvec: Vec, lang: Language) -> FairQuery | None:
    """The fairness-corrected query, when passages in another language than the question's compete.

    Within one language the correction has nothing to even out (XQuAD monolingual: dense 92.7
    without it, 91.9 with it).
    """
    means = snap.state.means
    in_play = set(p.query.filters.languages) if p.query.filters.languages else set(means.languages)
    if not p.fairness or means.global_mean is None or in_play == {lang.code}:
        return None
    return prepare_query(qvec, lang.code, means, snap.state.vectors.lang_slots, snap.reference)


def _slot_languages(snap: Snapshot, slots: npt.NDArray[np.int64]) -> list[str]:
    """The language of each language slot ('' for a slot shared by several languages)."""
    by_slot: dict[int, list[str]] = {}
    for lang, slot in snap.state.vectors.lang_slots.items():
        by_slot.setdefault(slot, []).append(lang)
    return [by_slot[int(s)][0] if len(by_slot.get(int(s), ())) == 1 else "" for s in slots]


def score(
    snap: Snapshot, qvec: Vec, fair: FairQuery | None, ids: Sequence[int]
) -> tuple[dict[int, float], dict[int, str]]:
    """Dense scores of indexed passages (fair cosine, or plain inner product) and their languages."""
    vecs, slots = snap.state.vectors.reconstruct(np.asarray(ids, dtype=np.int64))
    langs = _slot_languages(snap, slots)
    scores = vecs @ qvec if fair is None else fair.rescore(vecs, langs)
    return (
        {int(i): float(s) for i, s in zip(ids, scores, strict=True)},
        {int(i): lang for i, lang in zip(ids, langs, strict=True)},
    )


def dense(
    snap: Snapshot, qvec: Vec, fair: FairQuery | None, k: int, allowed: npt.NDArray[np.int64] | None
) -> Candidates:
    """Top-k FAISS candidates (language offsets applied when fair), rescored."""
    vectors = snap.state.vectors
    if fair is None:
        _, ids = vectors.search(qvec, k, allowed=allowed)
    else:
        _, ids = vectors.search(fair.vector, k, lang_offsets=fair.offsets, allowed=allowed)
    order = [int(i) for i in ids]
    scores, langs = score(snap, qvec, fair, order)
    return Candidates(dense=scores, langs=langs, dense_order=order, fair=fair)


def lexical(snap: Snapshot, p: Plan, language: str | None) -> dict[int, float]:
    """BM25 candidates; in hybrid mode only passages in the question's language (any when unknown)."""
    q_terms = list(dict.fromkeys(terms(p.query.text, language)))
    if not q_terms:
        return {}
    filters = p.query.filters
    if p.query.mode == "hybrid" and language is not None:
        if filters.languages and language not in filters.languages:
            return {}
        filters = replace(filters, languages=(language,))
    # Common within what BM25 searches: in a corpus of twelve languages no word is in a third of all
    # passages, yet "der" is in most German ones, and scoring its postings is most of BM25's time.
    scope = filters.languages[0] if len(filters.languages) == 1 else None
    common = snap.store.common_terms(q_terms, COMMON_TERM_SHARE, COMMON_TERM_MIN_PASSAGES, scope)
    if common and len(common) < len(q_terms):
        q_terms = [t for t in q_terms if t not in common]
    rows = snap.store.lexical(q_terms, snap.state.generation, filters, p.k)
    return {pid: s for pid, s, _lang in rows}


def ranked(scores: dict[int, float]) -> list[tuple[int, float]]:
    """Best first; ties by passage id, so equal scores page the same way every time."""
    return sorted(scores.items(), key=lambda x: (-x[1], x[0]))


def fuse(c: Candidates, qlang: str | None) -> list[tuple[int, float]]:
    """Reorder the question-language passages by dense+BM25 inside the places dense gave them.

    The pool is every candidate in the question's language (every candidate when the language is
    unknown); a dense candidate that BM25 did not return counts as BM25 0. Normalisation uses the
    best lexical score and the first NORM_DEPTH dense candidates, which do not depend on how many
    candidates a deep page asks for, so pages stay consistent.
    """
    if not c.lexical or not c.dense:
        return ranked(c.dense or c.lexical)
    head = [c.dense[i] for i in c.dense_order[:NORM_DEPTH] if i in c.dense] or list(c.dense.values())
    hi, lo = max(head), min(head)
    span = hi - lo if hi - lo > 1e-9 else 1.0
    lmax = max(c.lexical.values())
    lmax = lmax if lmax > 0 else 1.0
    pool = [pid for pid in c.dense if pid in c.lexical or qlang is None or c.langs.get(pid) == qlang]
    if not pool:
        return ranked(c.dense)
    key = {pid: (c.dense[pid] - lo) / span + LEXICAL_WEIGHT * c.lexical.get(pid, 0.0) / lmax for pid in pool}
    order = sorted(pool, key=lambda pid: (-key[pid], pid))
    slots = sorted((c.dense[pid] for pid in pool), reverse=True)
    out = dict(c.dense)
    out.update(zip(order, slots, strict=True))
    return ranked(out)


def recency(
    fused: list[tuple[int, float]], heads: dict[int, tuple[str, str | None]], half_life_days: float | None
) -> list[tuple[int, float]]:
    """Scores boosted by freshness: the bonus halves every `half_life_days` (no date: no bonus)."""
    if not half_life_days:
        return fused
    now = time.time()
    out: dict[int, float] = {}
    for pid, s in fused:
        published = heads[pid][1] if pid in heads else None
        boost = 1.0
        if published:
            try:
                age = max((now - epoch_seconds(published)) / DAY_S, 0.0)
                boost = 0.5 + 0.5 * math.pow(0.5, age / half_life_days)
            except ValueError:
                boost = 1.0
        out[pid] = s * boost if s >= 0 else s / boost
    return ranked(out)


def page(
    p: Plan, ranked_ids: list[tuple[int, float]], heads: dict[int, tuple[str, str | None]]
) -> tuple[list[tuple[int, float]], bool]:
    """The requested page (at most `per_article` passages per article) and whether more follow."""
    q = p.query
    picked: list[tuple[int, float]] = []
    per_article: dict[str, int] = {}
    for pid, s in ranked_ids:
        if pid not in heads or per_article.get(heads[pid][0], 0) >= q.per_article:
            continue
        per_article[heads[pid][0]] = per_article.get(heads[pid][0], 0) + 1
        picked.append((pid, s))
        if len(picked) > q.offset + q.top_k:
            break
    return picked[q.offset : q.offset + q.top_k], len(picked) > q.offset + q.top_k


@dataclass(frozen=True, eq=False)
class Evidence:
    """What a passage's sentences say about the question: the best similarity (it ranks) and each
    sentence's plain inner product (the highest is the sentence shown)."""

    similarity: float
    spans: npt.NDArray[np.int32]
    plain: Vec

    def best_span(self) -> tuple[int, int, float]:
        """`[start, end)` in the article of the sentence nearest the question by inner product, and
        that inner product (the raw cosine: stored and query vectors are unit vectors of one model).

        Plain inner product: inside one passage the language is the same, and centring short
        texts by a passage-language mean adds noise (XQuAD: see README).
        """
        i = int(np.argmax(self.plain))
        b, e = self.spans[i]
        return int(b), int(e), float(self.plain[i])


def sentence_evidence(
    snap: Snapshot, qvec: Vec, fair: FairQuery | None, langs: dict[int, str], ids: Sequence[int]
) -> dict[int, Evidence]:
    """Each passage's sentences scored against the question (one matrix product; no model call).

    The similarity that ranks is in the passages' space: fair cosine with the passage language's
    mean taken out when the search is language-fair, plain inner product otherwise. Passages
    stored without sentences (before a repair) are absent.
    """
    sents = snap.store.passage_sentences(ids)
    have = [pid for pid in ids if pid in sents]
    if not have:
        return {}
    counts = [len(sents[pid].spans) for pid in have]
    starts = np.cumsum([0, *counts[:-1]])
    vecs = np.vstack([sents[pid].vectors for pid in have])
    plain = vecs @ qvec
    sims = plain
    if fair is not None:
        sims = fair.rescore(
            vecs, [lang for pid, n in zip(have, counts, strict=True) for lang in [langs.get(pid, "")] * n]
        )
    best = np.maximum.reduceat(sims, starts)
    return {
        pid: Evidence(float(best[i]), sents[pid].spans, plain[starts[i] : starts[i] + counts[i]])
        for i, pid in enumerate(have)
    }


def evidence_ids(
    snap: Snapshot, p: Plan, fused: list[tuple[int, float]], heads: dict[int, tuple[str, str | None]]
) -> tuple[list[int], dict[str, int]]:
    """Every passage (passing the filters) of the leading articles of the fused ranking, and each
    article's tier: its fused rank // EVIDENCE_ARTICLES.

    Whole tiers of EVIDENCE_ARTICLES articles, as many as the page reaches: sentence evidence
    reorders articles inside a tier only, so every page of a ranking sees the same order.
    """
    reach = max(p.query.offset + p.query.top_k, 1)
    need = -(-reach // EVIDENCE_ARTICLES) * EVIDENCE_ARTICLES
    articles: dict[str, int] = {}
    for pid, _ in fused:
        if pid in heads:
            articles.setdefault(heads[pid][0], len(articles) // EVIDENCE_ARTICLES)
            if len(articles) >= need:
                break
    if not articles:
        return [], {}
    filters = replace(p.query.filters, article_ids=tuple(articles))
    return [int(i) for i in snap.store.filtered_ids(snap.state.generation, filters)], articles


def sentence_scores(
    fused: list[tuple[int, float]], dense: dict[int, float], evidence: dict[int, Evidence]
) -> dict[int, float]:
    """`(1 - w) * passage + w * best sentence` for every passage with sentence evidence.

    An article's best passage is then the one holding the best sentence unless another passage is
    much closer as a whole, and the article's score is its best passage's (XQuAD: see README).
    """
    base = dict(fused)
    return {
        pid: (1 - SENTENCE_WEIGHT) * base.get(pid, dense.get(pid, 0.0)) + SENTENCE_WEIGHT * ev.similarity
        for pid, ev in evidence.items()
    }


def sharpen(
    fused: list[tuple[int, float]],
    scored: dict[int, float],
    lexical: dict[int, float] | None = None,
    tier: dict[int, int] | None = None,
) -> list[tuple[int, float]]:
    """Passages with sentence evidence (`scored`, sentence_scores) first, plus TERM_WEIGHT times their
    `lexical` score over the best one when given, inside each `tier` of articles (evidence_ids); the
    rest after, as fused."""
    if not scored:
        return fused
    top = max((lexical or {}).values(), default=0.0)
    if lexical and top > 0:
        scored = {pid: s + TERM_WEIGHT * lexical.get(pid, 0.0) / top for pid, s in scored.items()}
    tiers = tier or {}
    order = sorted(scored.items(), key=lambda x: (tiers.get(x[0], 0), -x[1], x[0]))
    return order + [(pid, s) for pid, s in fused if pid not in scored]


def lexical_evidence(p: Plan, c: Candidates, lang: Language, ids: Sequence[int]) -> dict[int, float]:
    """BM25 of the passages of `ids` (0 when not a lexical candidate), for sharpen; hybrid searches
    only, and only when no passage in another language competes (fairness not in play).

    With other languages in play, words shared with the question would favour its language over
    better answers in others; BM25 already reorders the question's language inside its places (fuse).
    """
    if p.query.mode != "hybrid" or c.fair is not None or not lang.certain or not c.lexical:
        return {}
    return {pid: c.lexical[pid] for pid in ids if pid in c.lexical and c.langs.get(pid) == lang.code}


# ---- the searcher -----------------------------------------------------------------------------------


class Searcher:
    """Answers questions against the serving generation; the service's one read path."""

    def __init__(self, core: Core, pool: ThreadPoolExecutor) -> None:
        self.core = core
        self.pool = pool

    def search(self, query: SearchQuery, query_vector: Vec | None = None) -> SearchOutcome:
        """Ranked, cited passages for a question (`query_vector`: its embedding, if already known)."""
        t0 = time.perf_counter()
        core = self.core
        p = plan(query, max_chars=core.config.max_query_chars, fairness=core.config.fairness)
        state = core.state
        qvec, pending = query_vector, None
        if qvec is None and p.needs_vector:
            if query.mode == "hybrid":
                pending = self.pool.submit(self._early_lexical, state, p)
            qvec = core.scheduler.encode_query(state.embedder, query.text)
        # Collected before taking the read lock: a writer queued between the two could otherwise
        # hold the early search's lock request behind ours.
        early = pending.result() if pending is not None else None
        with core.lock.read():
            snap, qvec = self._snapshot(state, p, qvec)
            lang = identify(snap, p, qvec, early)
            cands = self._retrieve(snap, p, qvec, lang, early)
            heads = snap.store.passage_heads([pid for pid, _ in cands.fused[: p.depth]])
            fused, evidence = self._sharpen(snap, p, qvec, cands, heads, lang)
            hits, has_more = page(p, recency(fused, heads, query.recency_half_life_days), heads)
            rows = snap.store.passages([pid for pid, _ in hits])  # text is read for the page only
            hits = [(pid, s) for pid, s in hits if pid in rows]
            page_rows = [rows[pid] for pid, _ in hits]
            lights, evidence = self._highlights(snap, p, page_rows, qvec, cands, evidence, lang)
            pvecs = self._passage_vectors(snap, p, page_rows)
        lights = self._answers(p, page_rows, qvec, evidence, pvecs, lights, lang)
        return SearchOutcome(
            query=query.text,
            hits=[
                Hit(
                    rank=query.offset + i + 1,
                    score=round(float(s), 6),
                    passage=row,
                    highlight=light,
                    dense_score=round(cands.dense[pid], 6) if pid in cands.dense else None,
                    lexical_score=round(cands.lexical[pid], 6) if pid in cands.lexical else None,
                )
                for i, ((pid, s), row, light) in enumerate(zip(hits, page_rows, lights, strict=True))
            ],
            took_ms=round((time.perf_counter() - t0) * 1000, 3),
            generation=snap.state.generation,
            query_language=lang.code,
            has_more=has_more,
        )

    def _snapshot(self, state: ServingState, p: Plan, qvec: Vec | None) -> tuple[Snapshot, Vec | None]:
        """The state to read (caller holds the read lock); re-encodes if a rebuild switched models meanwhile."""
        current = self.core.state
        if current.generation != state.generation and qvec is not None:
            qvec = self.core.scheduler.encode_query(current.embedder, p.query.text)
        ref = load_reference(current.embedder.model_id, current.vectors.dim) if p.fairness else None
        return Snapshot(current, self.core.store, ref), qvec

    def _retrieve(
        self, snap: Snapshot, p: Plan, qvec: Vec | None, lang: Language, early: EarlyLexical | None
    ) -> Candidates:
        """Dense and lexical candidates as the mode asks, fused."""
        q = p.query
        allowed = None if q.filters.empty else snap.store.filtered_ids(snap.state.generation, q.filters)
        fair = fair_query(snap, p, qvec, lang) if qvec is not None else None
        c = Candidates(fair=fair)
        if qvec is not None and q.mode != "lexical" and (allowed is None or len(allowed)):
            c = dense(snap, qvec, fair, p.k, allowed)
        if q.mode == "lexical" or (q.mode == "hybrid" and lang.certain):
            fresh = early is not None and early.state is snap.state and early.language == lang.code
            c.lexical = early.scores if fresh and early is not None else lexical(snap, p, lang.code)
        if q.mode == "dense":
            c.fused = ranked(c.dense)
        elif q.mode == "lexical" or qvec is None:
            c.fused = ranked(c.lexical)
        else:
            missing = [pid for pid in c.lexical if pid not in c.dense]
            if missing:  # BM25 found passages dense did not: give them dense scores to fuse with
                more, more_langs = score(snap, qvec, fair, missing)
                c.dense.update(more)
                c.langs.update(more_langs)
            c.fused = fuse(c, lang.code)
        return c

    def _early_lexical(self, state: ServingState, p: Plan) -> EarlyLexical | None:
        """BM25 in the language the question will most likely be given (lingua's guess, or the caller's).

        Used only when the language finally chosen (with the query vector) is the same and no
        write changed the index meanwhile; otherwise the search runs BM25 again.
        """
        with self.core.lock.read():
            if self.core.state.generation != state.generation:
                return None
            snap = Snapshot(self.core.state, self.core.store, None)
            guess = detect_query_language(p.query.text)
            qlang = p.query.language or match_corpus_language(guess[0], state.means.languages)
            return EarlyLexical(snap.state, qlang, guess, lexical(snap, p, qlang))

    def _sharpen(
        self,
        snap: Snapshot,
        p: Plan,
        qvec: Vec | None,
        c: Candidates,
        heads: dict[int, tuple[str, str | None]],
        lang: Language,
    ) -> tuple[list[tuple[int, float]], dict[int, Evidence]]:
        """Score every passage of the leading articles by its best sentence, and reorder by it.

        Dense and hybrid only: lexical scores are on another scale. `heads` gains the passages
        that were not candidates (an article's answering passage may not have been one).
        """
        if qvec is None or p.query.mode == "lexical":
            return c.fused, {}
        ids, tiers = evidence_ids(snap, p, c.fused, heads)
        missing = [pid for pid in ids if pid not in c.dense]
        if missing:
            more, more_langs = score(snap, qvec, c.fair, missing)
            c.dense.update(more)
            c.langs.update(more_langs)
        heads.update(snap.store.passage_heads([pid for pid in ids if pid not in heads]))
        evidence = sentence_evidence(snap, qvec, c.fair, c.langs, ids)
        tier = {pid: tiers.get(heads[pid][0], 0) for pid in ids if pid in heads}
        scored = sentence_scores(c.fused, c.dense, evidence)
        return sharpen(c.fused, scored, lexical_evidence(p, c, lang, list(scored)), tier), evidence

    def _highlights(
        self,
        snap: Snapshot,
        p: Plan,
        rows: list[PassageRow],
        qvec: Vec | None,
        c: Candidates,
        evidence: dict[int, Evidence],
        lang: Language,
    ) -> tuple[list[Highlight], dict[int, Evidence]]:
        """Semantic: each passage's best stored sentence and its cosine (no model call); lexical: shared terms.

        A passage stored without sentences (before start-up repair re-embedded it) gets the lexical one.
        Also returns the sentence evidence of the page's passages (for the answer model).
        """
        if p.query.highlight == "semantic" and qvec is not None:
            todo = [r.id for r in rows if r.id not in evidence]
            if todo:
                langs = {**{r.id: r.language for r in rows}, **c.langs}
                evidence = {**evidence, **sentence_evidence(snap, qvec, c.fair, langs, todo)}
            lights = [
                sentence_highlight(r, *evidence[r.id].best_span())
                if r.id in evidence
                else lexical_highlight(r, p.query.text, lang.code)
                for r in rows
            ]
            return lights, evidence
        return [lexical_highlight(r, p.query.text, lang.code) for r in rows], evidence

    def _reads(self, p: Plan) -> int:
        """How many hits the answer model reads for this query (0: none)."""
        core, q = self.core, p.query
        n = core.config.answer_hits if q.answer_hits is None else q.answer_hits
        return 0 if core.answers is None or q.highlight != "semantic" else n

    def _passage_vectors(self, snap: Snapshot, p: Plan, rows: list[PassageRow]) -> Vec | None:
        """The stored vectors of the hits the answer model reads (caller holds the read lock)."""
        n = min(self._reads(p), len(rows))
        if n <= 0:
            return None
        vecs, _ = snap.state.vectors.reconstruct(np.asarray([r.id for r in rows[:n]], dtype=np.int64))
        return vecs

    def _answers(
        self,
        p: Plan,
        rows: list[PassageRow],
        qvec: Vec | None,
        evidence: dict[int, Evidence],
        pvecs: Vec | None,
        lights: list[Highlight],
        lang: Language,
    ) -> list[Highlight]:
        """The answer model's highlights for the first hits (index/answers.py); after the read lock:
        the passages' text and sentences are already read."""
        core, q = self.core, p.query
        n = self._reads(p)
        if core.answers is None or n <= 0 or qvec is None or pvecs is None:
            return lights
        units = [
            Units(evidence[r.id].spans, evidence[r.id].plain, float(pvecs[i] @ qvec))
            if r.id in evidence and i < len(pvecs)
            else None
            for i, r in enumerate(rows)
        ]
        question = q.read_text or q.text
        return read_hits(core.scheduler, core.answers, question, lang.code, rows, units, lights, n)


__all__ = ["HighlightMode", "Hit", "Mode", "SearchOutcome", "SearchQuery", "Searcher", "plan"]
