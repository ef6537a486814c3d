"""The store of record, as the domain sees it: records, filters, and the `Store` protocol.

Everything a search needs survives in the store; the FAISS index and the lexical caches are
rebuilt from it. The protocol is shaped for a store that may live on another machine: writes go
through transactions, every committed write bumps a change sequence (`seq`), and nothing in it
names a file. `index/sqlite_store.py` is the embedded implementation.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from citesearch.index.articles import Article

Vector = npt.NDArray[np.float32]


@dataclass(frozen=True)
class ArticleRow:
    """An article as stored."""

    id: str
    title: str | None
    text: str
    url: str | None
    source: str | None
    published_at: str | None
    language: str | None
    metadata: dict[str, Any]
    content_hash: str
    created_at: str
    updated_at: str


@dataclass(frozen=True)
class PassageRow:
    """A passage joined with the article fields a citation needs."""

    id: int
    article_id: str
    ord: int
    char_start: int
    char_end: int
    n_tokens: int
    language: str
    text: str
    title: str | None
    url: str | None
    source: str | None
    published_at: str | None


@dataclass(frozen=True, eq=False)
class Sentences:
    """A passage's sentences: `[start, end)` offsets into the article and one vector each.

    Written, deleted and replicated with their passage (one record), so a store persists them as
    one opaque value (`to_bytes`) beside the passage vector. A sentence too short to mean anything
    on its own is merged with a neighbour at ingest (index/writes.py), so each span is one vector.
    """

    spans: npt.NDArray[np.int32]  # (n, 2): [start, end) in the article's text
    vectors: Vector  # (n, dim), unit length like passage vectors

    def __len__(self) -> int:
        return len(self.spans)

    def to_bytes(self) -> bytes:
        """`n` (uint32), the spans (int32), the vectors (float32), little-endian."""
        n = np.array([len(self.spans)], dtype="<u4")
        spans = np.ascontiguousarray(self.spans, dtype="<i4")
        return n.tobytes() + spans.tobytes() + np.ascontiguousarray(self.vectors, dtype="<f4").tobytes()

    @classmethod
    def from_bytes(cls, blob: bytes) -> Sentences:
        """The inverse of `to_bytes`."""
        n = int.from_bytes(blob[:4], "little")
        spans = np.frombuffer(blob, dtype=np.int32, count=2 * n, offset=4).reshape(n, 2)
        vectors = np.frombuffer(blob, dtype=np.float32, offset=4 + 8 * n)  # read-only views, no copy
        return cls(spans, vectors.reshape(n, -1))


@dataclass(frozen=True)
class NewPassage:
    """A passage ready to be written: its span, its language, its vector, its lexical terms, its sentences."""

    ord: int
    char_start: int
    char_end: int
    n_tokens: int
    language: str
    vector: Vector
    terms: str
    sentences: Sentences


@dataclass(frozen=True)
class Filters:
    """Restrictions applied inside retrieval (all optional, combined with AND)."""

    languages: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    article_ids: tuple[str, ...] = ()
    published_after: float | None = None
    published_before: float | None = None

    @property
    def empty(self) -> bool:
        """True when nothing is restricted."""
        return not (
            self.languages
            or self.sources
            or self.article_ids
            or self.published_after is not None
            or self.published_before is not None
        )


class StoreTransaction(Protocol):
    """One atomic write: all of it is committed, or none."""

    removed: list[int]
    """Ids of the passages this transaction deleted so far (the FAISS index must drop them too)."""

    def next_seq(self) -> int:
        """Bump and return the change sequence."""
        ...

    def set_meta(self, key: str, value: str) -> None:
        """Set a meta value."""
        ...

    def delete_meta(self, key: str) -> None:
        """Remove a meta value."""
        ...

    def upsert_article(self, article: Article, *, now: str, seq: int, created_at: str | None = None) -> None:
        """Insert or replace an article (created_at survives an update unless given)."""
        ...

    def delete_passages(self, article_id: str, generation: int | None) -> list[int]:
        """Drop an article's passages (one generation, or all); returns the removed ids."""
        ...

    def delete_article(self, article_id: str) -> list[int] | None:
        """Delete an article and all its passages; None when unknown."""
        ...

    def insert_passages(self, article_id: str, generation: int, passages: Sequence[NewPassage]) -> list[int]:
        """Insert passages with vectors and lexical terms; returns their new ids in order."""
        ...

    def rewrite_terms(self, terms_text: Callable[[str, str], str]) -> int:
        """Recompute every passage's lexical terms (the term scheme changed); returns how many."""
        ...

    def drop_generation(self, generation: int) -> int:
        """Remove every passage of a generation; returns how many."""
        ...

    def drop_generations_except(self, keep: Collection[int]) -> int:
        """Remove the passages of every generation not in `keep`; returns how many."""
        ...


class Store(Protocol):
    """The store of record. Reads may run from any thread; writes are serialised by the caller."""

    @property
    def generation(self) -> int:
        """The generation that serves searches."""
        ...

    @property
    def seq(self) -> int:
        """The change sequence: grows with every committed write."""
        ...

    def get_meta(self, key: str) -> str | None:
        """A meta value, or None."""
        ...

    def transaction(self) -> AbstractContextManager[StoreTransaction]:
        """A write transaction: committed on success, rolled back on error."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...

    def content_hashes(self, ids: Iterable[str]) -> dict[str, str]:
        """The content hash of each known article among `ids`."""
        ...

    def get_article(self, article_id: str) -> ArticleRow | None:
        """One article, or None."""
        ...

    def list_articles(self, limit: int, after: str | None) -> list[ArticleRow]:
        """Articles in id order after the id `after` (keyset pagination)."""
        ...

    def article_ids(self) -> list[str]:
        """All article ids, in order."""
        ...

    def articles_changed_since(self, seq: int) -> list[str]:
        """Ids of the articles written after change sequence `seq`."""
        ...

    def articles_without_passages(self, generation: int) -> list[str]:
        """Articles with no passage in `generation` (to re-embed)."""
        ...

    def articles_without_sentences(self, generation: int) -> list[str]:
        """Articles with a passage in `generation` stored without sentences (written before they existed)."""
        ...

    def article_passages(self, article_id: str, generation: int) -> list[PassageRow]:
        """The passages of one article in one generation, in order."""
        ...

    def passages(self, ids: Sequence[int]) -> dict[int, PassageRow]:
        """Passages by id, with their article fields."""
        ...

    def passage_heads(self, ids: Sequence[int]) -> dict[int, tuple[str, str | None]]:
        """{passage id: (article id, published_at)}: what ranking needs, without any text."""
        ...

    def counts(self, generation: int) -> tuple[int, int]:
        """(articles, passages in `generation`)."""
        ...

    def generation_passages(self) -> dict[int, int]:
        """Passages stored per generation (every generation that holds any)."""
        ...

    def sentence_count(self, generation: int) -> int:
        """Sentence vectors stored with the passages of `generation`."""
        ...

    def passage_sentences(self, ids: Sequence[int]) -> dict[int, Sentences]:
        """The sentences of passages by id (passages stored without any are absent)."""
        ...

    def passage_ids(self, generation: int) -> npt.NDArray[np.int64]:
        """Every passage id of a generation."""
        ...

    def iter_vectors(
        self, generation: int, ids: Sequence[int] | None = None
    ) -> Iterator[tuple[npt.NDArray[np.int64], Vector, list[str]]]:
        """(ids, vectors, languages) in batches, for a whole generation or only `ids`."""
        ...

    def lang_stats(self, generation: int) -> dict[str, tuple[int, npt.NDArray[np.float64]]]:
        """Per-language passage count and vector sum (float64) of a generation."""
        ...

    def filtered_ids(self, generation: int, filters: Filters) -> npt.NDArray[np.int64]:
        """Ids of the passages of a generation that pass the filters."""
        ...

    def lexical(
        self, terms: Sequence[str], generation: int, filters: Filters, limit: int
    ) -> list[tuple[int, float, str]]:
        """BM25 top `limit` for passages holding any of `terms`: (passage id, score, language)."""
        ...

    def common_terms(
        self, terms: Sequence[str], share: float, min_passages: int, language: str | None = None
    ) -> set[str]:
        """The terms found in more than `share` of the passages in `language` (all passages when
        None); none while there are fewer than `min_passages` of them."""
        ...
