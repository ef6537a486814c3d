"""The path of an article: validate, split, embed (behind any waiting question), commit, index.

1. `validate` builds each `Article` (index/articles.py) or names every bad one by position.
2. `prepare` splits it into passages (index/splitter.py) and embeds them through the inference
   scheduler at write priority: questions asked meanwhile go first. No lock is held.
3. `commit` writes articles, passages, vectors and lexical terms in one store transaction under
   the write mutex; readers are held off only from the commit to the end of the FAISS update.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

import numpy as np
import numpy.typing as npt

from citesearch.embeddings.scheduler import Priority
from citesearch.index.articles import Article, ArticleInput, build_article, duplicate_id_problems
from citesearch.index.errors import InvalidArticleError, NotFoundError
from citesearch.index.lexical import terms_text
from citesearch.index.splitter import PassageSpan, sentences, split_passages
from citesearch.index.state import Core, Encoder
from citesearch.index.store import ArticleRow, NewPassage, Sentences, StoreTransaction
from citesearch.index.vectors import VectorIndex

WriteStatus = Literal["created", "updated", "unchanged"]

MIN_SENTENCE_CHARS = 24
"""A sentence shorter than this (a dateline, "He declined.", a heading) shares its neighbour's vector:
it is embedded together with the next sentence (the previous one when it is the last)."""


def sentence_units(text: str, start: int, end: int, language: str | None) -> list[tuple[int, int]]:
    """The sentences of `text[start:end]` to embed, as offsets into `text`; short ones join a neighbour."""
    spans = [(start + b, start + e) for b, e in sentences(text[start:end], language)]
    out: list[tuple[int, int]] = []
    pending: int | None = None
    for b, e in spans:
        b = b if pending is None else pending
        pending = None
        if e - b < MIN_SENTENCE_CHARS:
            pending = b
            continue
        out.append((b, e))
    if pending is not None:
        if out:
            out[-1] = (out[-1][0], spans[-1][1])
        else:
            out.append((pending, spans[-1][1]))
    return out


UNIT_WEIGHTS: Literal["equal", "chars", "tokens"] = "tokens"
"""How a passage pools its sentence units' vectors (passage_vectors="sentences"): each unit counts
once, or by its length in characters, or in model tokens (closest to the model's own mean pooling
over the passage's tokens)."""


def unit_weights(
    embedder: Encoder, units: Sequence[list[tuple[int, int]]], texts: Sequence[str]
) -> list[npt.NDArray[np.float32]]:
    """Per passage of several units, one weight per unit (`texts`: every unit's text, in order)."""
    if UNIT_WEIGHTS == "tokens":
        overhead = embedder.count_tokens_batch([""])[0]  # the prompt and special tokens
        flat = [max(1, n - overhead) for n in embedder.count_tokens_batch(list(texts))]
    elif UNIT_WEIGHTS == "chars":
        flat = [e - b for u in units for b, e in u]
    else:
        flat = [1] * len(texts)
    bounds = np.cumsum([0, *(len(u) for u in units)])
    w = np.asarray(flat, dtype=np.float32)
    return [w[b:e] for b, e in itertools.pairwise(bounds)]


def pool_passages(
    n_units: Sequence[int],
    own: npt.NDArray[np.float32],
    sentence_vecs: Sequence[npt.NDArray[np.float32]],
    weights: Sequence[npt.NDArray[np.float32]],
    dim: int,
) -> npt.NDArray[np.float32]:
    """Every passage's vector, in order: its own (`own`, in order) when it is one unit, else the
    L2-normalised weighted mean of its units' vectors (`sentence_vecs` and `weights`, in order)."""
    out = np.empty((len(n_units), dim), dtype=np.float32)
    i = j = 0
    for k, n in enumerate(n_units):
        if n == 1:
            out[k] = own[i]
            i += 1
        else:
            v = weights[j] @ sentence_vecs[j]
            out[k] = v / np.linalg.norm(v)
            j += 1
    return out


@dataclass(frozen=True)
class WriteResult:
    """What one article write did."""

    id: str
    status: WriteStatus
    passages: int


@dataclass(frozen=True)
class Prepared:
    """An article split and embedded, ready to commit."""

    article: Article
    passages: list[NewPassage]


def now_iso() -> str:
    """The current UTC time as stored (microseconds, Z)."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def article_from_row(row: ArticleRow) -> Article:
    """The article a stored row was built from (for re-embedding: repair and rebuilds).

    Taken as stored, hash included, not validated again: the row passed the rules of the day it
    was written, and a rule tightened since (RFC 3339 dates, characters refused in URLs) must not
    stop it from being embedded again.
    """
    return Article(
        id=row.id,
        title=row.title,
        text=row.text,
        url=row.url,
        source=row.source,
        published_at=row.published_at,
        language=row.language,
        metadata=MappingProxyType(dict(row.metadata)),
        content_hash=row.content_hash,
    )


def add_passages(vectors: VectorIndex, ids: Sequence[int], passages: Sequence[NewPassage]) -> None:
    """Add committed passages to a FAISS index under their store ids."""
    if passages:
        vectors.add(
            np.asarray(ids, dtype=np.int64),
            np.vstack([p.vector for p in passages]).astype(np.float32),
            [p.language for p in passages],
        )


def assemble(
    articles: Sequence[Article],
    spans: Sequence[Sequence[PassageSpan]],
    units: Sequence[Sequence[list[tuple[int, int]]]],
    passage_vecs: npt.NDArray[np.float32],
    sentence_vecs: Iterator[npt.NDArray[np.float32]],
) -> list[Prepared]:
    """Prepared articles from their passages (`passage_vecs`, in order) and, for each passage of
    more than one sentence unit, the next array of `sentence_vecs`; a passage that is one unit
    reuses its passage vector."""
    out: list[Prepared] = []
    k = 0
    for a, ss, us in zip(articles, spans, units, strict=True):
        lang = a.language or "und"
        passages: list[NewPassage] = []
        for j, (s, u) in enumerate(zip(ss, us, strict=True)):
            sent = next(sentence_vecs) if len(u) > 1 else passage_vecs[k + j : k + j + 1]
            sentences = Sentences(np.asarray(u, dtype=np.int32).reshape(-1, 2), sent.copy())
            passages.append(
                NewPassage(
                    j,
                    s.char_start,
                    s.char_end,
                    s.n_tokens,
                    lang,
                    passage_vecs[k + j],
                    terms_text(s.text, lang),
                    sentences,
                )
            )
        k += len(ss)
        out.append(Prepared(a, passages))
    return out


class Writer:
    """Creates, updates and deletes articles; each write is searchable when it returns."""

    def __init__(self, core: Core) -> None:
        self.core = core

    def validate(self, inputs: Sequence[ArticleInput]) -> list[Article]:
        """Build articles, or raise InvalidArticleError naming every bad one (by position)."""
        articles: list[Article] = []
        details: list[dict[str, object]] = []
        for i, inp in enumerate(inputs):
            try:
                articles.append(build_article(inp, max_bytes=self.core.config.max_article_bytes))
            except InvalidArticleError as exc:
                details.extend({**d, "index": i} for d in exc.details)
        if details:
            raise InvalidArticleError("invalid article(s) in the batch", details=details)
        duplicates = duplicate_id_problems(articles)
        if duplicates:
            raise InvalidArticleError("the batch names an article id more than once", details=duplicates)
        return articles

    def prepare(
        self, articles: Sequence[Article], embedder: Encoder, priority: Priority = Priority.WRITE
    ) -> list[Prepared]:
        """Split and embed articles (no lock held); InvalidArticleError if one has too many passages.

        Passages and their sentences go to the model in one scheduler call (it batches by length);
        a passage that is one sentence reuses its passage vector. With `passage_vectors="sentences"`
        a passage of several sentence units is not embedded itself: its vector pools its units'.
        """
        spans = [self._split(a, i, embedder) for i, a in enumerate(articles)]
        units = [[self._sentence_units(a, s) for s in ss] for a, ss in zip(articles, spans, strict=True)]
        flat = [
            (a, s, u)
            for a, ss, us in zip(articles, spans, units, strict=True)
            for s, u in zip(ss, us, strict=True)
        ]
        pooled = self.core.config.passage_vectors == "sentences"
        own = [s.text for _, s, u in flat if len(u) == 1 or not pooled]
        parts = [a.text[b:e] for a, _, u in flat if len(u) > 1 for b, e in u]
        vecs = self.core.scheduler.encode_passages(embedder, own + parts, priority)
        counts = [len(u) for _, _, u in flat if len(u) > 1]
        bounds = np.cumsum([len(own), *counts])
        sentence_vecs = [vecs[b:e] for b, e in itertools.pairwise(bounds)]
        passage_vecs = vecs[: len(own)]
        if pooled:
            weights = unit_weights(embedder, [u for _, _, u in flat if len(u) > 1], parts)
            n_units = [len(u) for _, _, u in flat]
            passage_vecs = pool_passages(n_units, passage_vecs, sentence_vecs, weights, embedder.dim)
        return assemble(articles, spans, units, passage_vecs, iter(sentence_vecs))

    def _sentence_units(self, article: Article, span: PassageSpan) -> list[tuple[int, int]]:
        """The passage's sentences as embedded (offsets into the article); one span when switched off."""
        if not self.core.config.sentence_vectors:
            return [(span.char_start, span.char_end)]
        return sentence_units(article.text, span.char_start, span.char_end, article.language)

    def _split(self, article: Article, position: int, embedder: Encoder) -> list[PassageSpan]:
        """The article's passages, refused early when it would take more than the configured number."""
        cfg = self.core.config
        max_tokens = min(cfg.max_passage_tokens, embedder.max_tokens)
        # Each passage holds at most max_tokens, so this many tokens need at least this many passages:
        # a huge article is refused after one tokenizer call, before it is split or embedded.
        at_least = -(-embedder.count_tokens_batch([article.text])[0] // max_tokens)
        if at_least <= cfg.max_article_passages:
            spans = split_passages(
                article.text,
                embedder.count_tokens_batch,
                language=article.language,
                target_tokens=min(cfg.target_tokens, max_tokens),
                max_tokens=max_tokens,
                overlap_sentences=cfg.overlap_sentences,
            )
            if len(spans) <= cfg.max_article_passages:
                return spans
        raise InvalidArticleError(
            "article too long",
            details=[
                {
                    "field": "text",
                    "message": f"the text makes more than {cfg.max_article_passages} passages "
                    "(CITESEARCH_MAX_ARTICLE_PASSAGES); split it into several articles",
                    "index": position,
                }
            ],
        )

    def write(self, articles: Sequence[Article]) -> list[WriteResult]:
        """Write validated articles: unchanged ones are no-ops, changed ones replace their passages.

        `validate` refuses a batch that repeats an id; here (files ingested by the CLI) the last wins.
        """
        by_id = {a.id: a for a in articles}
        known = self.core.store.content_hashes(by_id)
        todo = [a for a in by_id.values() if known.get(a.id) != a.content_hash]
        while True:
            state = self.core.state
            prepared = self.prepare(todo, state.embedder)
            with self.core.write_mutex:
                if self.core.state.generation != state.generation:  # a rebuild switched: embed again
                    continue
                results = {r.id: r for r in self.commit(prepared, known)}
                break
        for art_id in by_id.keys() - results.keys():
            n = len(self.core.store.article_passages(art_id, state.generation))
            results[art_id] = WriteResult(art_id, "unchanged", n)
        return [results[a_id] for a_id in by_id]

    def commit(self, prepared: Sequence[Prepared], known: dict[str, str]) -> list[WriteResult]:
        """One store transaction, then the FAISS update; readers wait only from commit to update."""
        if not prepared:
            return []
        core = self.core
        with core.write_mutex, ExitStack() as exclusive:
            gen = core.state.generation
            added: list[tuple[list[int], Prepared]] = []
            with core.store.transaction() as tx:
                seq, now = tx.next_seq(), now_iso()
                for p in prepared:
                    tx.upsert_article(p.article, now=now, seq=seq)
                    tx.delete_passages(p.article.id, gen)
                    added.append((tx.insert_passages(p.article.id, gen, p.passages), p))
                removed = tx.removed
                exclusive.enter_context(core.lock.write())  # the commit and the FAISS update, together
            self._apply(removed, added)
        return [
            WriteResult(p.article.id, "updated" if p.article.id in known else "created", len(p.passages))
            for p in prepared
        ]

    def _apply(self, removed: list[int], added: list[tuple[list[int], Prepared]]) -> None:
        """Bring the FAISS index and the means in line with a commit (caller holds the lock)."""
        core = self.core
        state = core.state
        state.vectors.remove(removed)
        for ids, p in added:
            add_passages(state.vectors, ids, p.passages)
        core.state = dataclasses.replace(state, means=core.means(state.generation))
        core.mark_dirty()

    def rewrite(self, row: ArticleRow) -> None:
        """Split and embed a stored article again (repair of an article left without passages)."""
        prepared = self.prepare([article_from_row(row)], self.core.state.embedder, Priority.REBUILD)
        self.commit(prepared, {row.id: row.content_hash})

    def delete(self, article_id: str) -> int:
        """Delete an article and its passages; gone from search on return. Raises NotFoundError."""
        core = self.core
        with core.write_mutex, ExitStack() as exclusive:
            with core.store.transaction() as tx:
                removed = _delete_article(tx, article_id)
                exclusive.enter_context(core.lock.write())
            self._apply(removed, [])
        return len(removed)


def _delete_article(tx: StoreTransaction, article_id: str) -> list[int]:
    removed = tx.delete_article(article_id)
    if removed is None:
        raise NotFoundError(f"article {article_id!r} not found")
    tx.next_seq()
    return removed


__all__ = [
    "MIN_SENTENCE_CHARS",
    "PassageSpan",
    "Prepared",
    "WriteResult",
    "Writer",
    "add_passages",
    "article_from_row",
    "assemble",
    "now_iso",
    "pool_passages",
    "sentence_units",
]
