"""The search service: store of record + FAISS index + model, kept consistent under one writer.

Writes: articles are validated, split and embedded outside any lock; then, under the write lock,
one SQLite transaction records articles, passages, vectors and lexical terms, and the in-memory
FAISS index is updated before the lock is released. Searches hold the read lock across the FAISS
search and the row fetch, so they never see half a write. The FAISS file is a checkpoint: at
start-up `repair()` reconciles it with the store (adds what is missing, drops orphans).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Literal, Protocol

import numpy as np
import numpy.typing as npt

from citesearch.embeddings.batching import QueryBatcher
from citesearch.index.articles import Article, ArticleInput, build_article
from citesearch.index.errors import DataDirLockedError, InvalidArticleError, ModelMismatchError, NotFoundError
from citesearch.index.fairness import LanguageMeans
from citesearch.index.language import warm_up as warm_up_language_id
from citesearch.index.lexical import LEXICAL_VERSION, terms_text
from citesearch.index.locks import RWLock
from citesearch.index.splitter import split_passages
from citesearch.index.store import ArticleRow, NewPassage, PassageRow, Store
from citesearch.index.vectors import Manifest, VectorIndex

if TYPE_CHECKING:
    from citesearch.index.search import SearchOutcome, SearchQuery

log = logging.getLogger("citesearch.index")

Progress = Callable[[float, str], None]
WriteStatus = Literal["created", "updated", "unchanged"]


@dataclass
class IndexConfig:
    """Everything the domain needs to know; the API builds it from its settings."""

    data_dir: Path
    target_tokens: int = 200
    max_passage_tokens: int = 512
    overlap_sentences: int = 0
    max_article_bytes: int = 1_000_000
    index_kind: Literal["auto", "flat", "hnsw"] = "auto"
    approx_threshold: int = 80_000
    checkpoint_every_s: float = 10.0
    fairness: bool = True
    max_article_passages: int = 256


@dataclass(frozen=True)
class WriteResult:
    """What one article write did."""

    id: str
    status: WriteStatus
    passages: int


@dataclass(frozen=True)
class ServiceStats:
    """Corpus and index figures of the serving generation."""

    articles: int
    passages: int
    index_vectors: int
    generation: int
    model: str
    dim: int
    index_kind: str
    languages: dict[str, int]


@dataclass
class RepairReport:
    """What the start-up check found and fixed."""

    loaded_checkpoint: bool = False
    added: int = 0
    removed: int = 0
    reembedded: list[str] = field(default_factory=list)
    dropped_build_passages: int = 0
    took_ms: float = 0.0

    @property
    def changed(self) -> bool:
        """True when anything had to be fixed."""
        return bool(self.added or self.removed or self.reembedded or self.dropped_build_passages)


@dataclass
class ServingState:
    """What one generation serves with: its model, its FAISS index and its language means."""

    generation: int
    embedder: Encoder
    vectors: VectorIndex
    means: LanguageMeans


@dataclass(frozen=True)
class _Prepared:
    article: Article
    passages: list[NewPassage]


def _stack(vectors: list[npt.NDArray[np.float32]], dim: int) -> npt.NDArray[np.float32]:
    return np.vstack(vectors).astype(np.float32) if vectors else np.zeros((0, dim), dtype=np.float32)


class Encoder(Protocol):
    """What the domain needs from a model (`embeddings.Embedder` is the real one)."""

    @property
    def dim(self) -> int: ...
    @property
    def model_id(self) -> str: ...
    @property
    def max_tokens(self) -> int: ...
    def encode_queries(self, texts: list[str]) -> npt.NDArray[np.float32]: ...
    def encode_passages(self, texts: list[str]) -> npt.NDArray[np.float32]: ...
    def count_tokens_batch(self, texts: list[str]) -> list[int]: ...


def _lock_data_dir(data_dir: Path) -> IO[str]:
    """Hold an exclusive lock on the data directory for this process's lifetime (released on kill too)."""
    fh = open(data_dir / "LOCK", "a+")  # noqa: SIM115 - held open until close()
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        fh.seek(0)
        holder = fh.read().strip() or "another process"
        fh.close()
        raise DataDirLockedError(
            f"data directory {data_dir} is in use by {holder}; stop it, or send writes to its HTTP API"
        ) from exc
    fh.seek(0)
    fh.truncate()
    fh.write(f"pid {os.getpid()}")
    fh.flush()
    return fh


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def published_ts(value: str | None) -> float | None:
    """Epoch seconds of an ISO date or datetime (dates count from midnight UTC)."""
    if not value:
        return None
    if len(value) == 10:
        d = dt.date.fromisoformat(value)
        return dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC).timestamp()
    parsed = dt.datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


class SearchService:
    """Articles in, cited passages out; the one object the API and CLI talk to."""

    def __init__(self, config: IndexConfig, embedder: Encoder) -> None:
        self.config = config
        self.data_dir = config.data_dir
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lockfile = _lock_data_dir(self.data_dir)
        try:
            self._open(embedder)
        except BaseException:
            self._lockfile.close()
            raise

    def _open(self, embedder: Encoder) -> None:
        self.store = Store(self.data_dir / "store.sqlite")
        self.lock = RWLock()
        self._write_mutex = threading.RLock()
        self._batchers: weakref.WeakKeyDictionary[Encoder, QueryBatcher] = weakref.WeakKeyDictionary()
        self._batchers_lock = threading.Lock()
        self._approximator: threading.Thread | None = None
        self._approximator_lock = threading.Lock()
        self._dirty_since: float | None = None
        self._stop = threading.Event()
        generation = self.store.generation
        stored_model = self.store.get_meta(f"model:{generation}")
        _, n_passages = self.store.counts(generation)
        if stored_model is not None and stored_model != embedder.model_id and n_passages:
            raise ModelMismatchError(
                f"the index was built with model {stored_model!r} but {embedder.model_id!r} is configured; "
                "set CITESEARCH_MODEL to the index's model, or rebuild with `citesearch reindex`"
            )
        if stored_model is None or not n_passages:
            self.store.set_meta(f"model:{generation}", embedder.model_id)
        self.state = ServingState(
            generation,
            embedder,
            VectorIndex(embedder.dim, kind=self._kind_for(n_passages)),
            LanguageMeans({}, {}, None),
        )
        warm_up_language_id()  # so the first article without a language doesn't pay for it
        self.last_repair = self.repair()
        self._ensure_lexical_version()
        self._checkpointer = threading.Thread(target=self._checkpoint_loop, name="checkpoint", daemon=True)
        self._checkpointer.start()

    # ---- paths ---------------------------------------------------------------------------------
    def _gen_dir(self, generation: int) -> Path:
        return self.data_dir / "generations" / f"{generation:06d}"

    # ---- start-up check ------------------------------------------------------------------------
    def repair(self) -> RepairReport:
        """Reconcile the FAISS checkpoint with the store: add missing vectors, drop orphans, re-embed."""
        t0 = time.perf_counter()
        report = RepairReport()
        with self._write_mutex, self.lock.write():
            gen = self.state.generation
            building = self.store.get_meta("building")
            if building is not None:
                with self.store.transaction() as tx:
                    report.dropped_build_passages = tx.drop_generation(int(building))
                    tx.conn.execute("DELETE FROM meta WHERE key = 'building'")
            loaded = VectorIndex.load(self._gen_dir(gen))
            vectors = self.state.vectors
            if loaded is not None:
                idx, manifest = loaded
                if manifest.generation == gen and manifest.model_id == self.state.embedder.model_id:
                    vectors = idx
                    report.loaded_checkpoint = True
            report.added, report.removed = self._reconcile(vectors, gen)
            self.state = ServingState(gen, self.state.embedder, vectors, self._means(gen))
        stale = self.store.articles_without_passages(gen)
        if stale:
            for art_id in stale:
                row = self.store.get_article(art_id)
                if row is not None:
                    self._rewrite_row(row)
            report.reembedded = stale
        if report.changed or not report.loaded_checkpoint:
            self.checkpoint()
        report.took_ms = (time.perf_counter() - t0) * 1000
        if report.changed:
            log.warning(
                "start-up repair: %d vectors added, %d orphans removed, %d articles re-embedded, "
                "%d passages of an unfinished rebuild dropped",
                report.added,
                report.removed,
                len(report.reembedded),
                report.dropped_build_passages,
            )
        return report

    def _ensure_lexical_version(self) -> None:
        """Rewrite the stored lexical terms when `index.lexical` changed its scheme (no re-embedding)."""
        if self.store.get_meta("lexical_version") == LEXICAL_VERSION:
            return
        with self._write_mutex, self.lock.write(), self.store.transaction() as tx:
            n = tx.rewrite_terms(terms_text)
            tx.set_meta("lexical_version", LEXICAL_VERSION)
        if n:
            log.warning("lexical terms of %d passages rewritten (scheme %s)", n, LEXICAL_VERSION)

    def _means(self, generation: int) -> LanguageMeans:
        return LanguageMeans.from_stats(self.store.lang_stats(generation))

    # ---- checkpoints ---------------------------------------------------------------------------
    def checkpoint(self) -> None:
        """Save the FAISS index and its manifest for the serving generation."""
        with self._write_mutex, self.lock.read():
            st = self.state
            manifest = Manifest(
                model_id=st.embedder.model_id,
                dim=st.embedder.dim,
                generation=st.generation,
                count=st.vectors.ntotal,
                store_seq=self.store.seq,
                built_at=self.store.get_meta(f"built:{st.generation}") or _now(),
            )
            st.vectors.save(self._gen_dir(st.generation), manifest)
            self._dirty_since = None

    def _checkpoint_loop(self) -> None:
        while not self._stop.wait(1.0):
            since = self._dirty_since
            if since is not None and time.monotonic() - since >= self.config.checkpoint_every_s:
                try:
                    self.go_approximate_if_large()
                    self.checkpoint()
                except Exception:  # a failed checkpoint is retried; the store stays the record
                    log.exception("checkpoint failed")

    def _approximate_in_background_if_large(self) -> None:
        """Start the switch to HNSW in a thread once the flat index outgrows the threshold."""
        st = self.state
        if (
            self.config.index_kind != "auto"
            or st.vectors.kind != "flat"
            or st.vectors.ntotal < self.config.approx_threshold
        ):
            return
        with self._approximator_lock:
            if self._approximator is not None and self._approximator.is_alive():
                return
            self._approximator = threading.Thread(
                target=self._approximate_quietly, name="hnsw-build", daemon=True
            )
            self._approximator.start()

    def _approximate_quietly(self) -> None:
        try:
            self.go_approximate_if_large()
        except Exception:  # the flat index keeps serving; the checkpointer tries again
            if not self._stop.is_set():
                log.exception("switch to an HNSW index failed")

    def wait_for_background(self, timeout: float | None = None) -> None:
        """Wait for a switch to HNSW started by a write (tests, benchmarks, orderly shutdown)."""
        t = self._approximator
        if t is not None:
            t.join(timeout)

    def go_approximate_if_large(self) -> bool:
        """With `index_kind="auto"`, replace a flat index that outgrew the threshold by HNSW.

        Built from the stored vectors off the write lock (searches and writes go on), then
        caught up with the writes made meanwhile and swapped in under the lock.
        """
        st = self.state
        if (
            self.config.index_kind != "auto"
            or st.vectors.kind != "flat"
            or st.vectors.ntotal < self.config.approx_threshold
        ):
            return False
        t0 = time.perf_counter()
        fresh = VectorIndex(st.vectors.dim, kind="hnsw")
        fresh.lang_slots = dict(st.vectors.lang_slots)
        for ids, vecs, langs in self.store.iter_vectors(st.generation):
            fresh.add(ids, vecs, langs)
        with self._write_mutex, self.lock.write():
            if self.state is not st or self._stop.is_set():
                return False
            self._reconcile(fresh, st.generation)
            self.state = ServingState(st.generation, st.embedder, fresh, st.means)
        log.info("switched to an HNSW index at %d passages in %.1f s", fresh.ntotal, time.perf_counter() - t0)
        self.checkpoint()
        return True

    def _reconcile(self, vectors: VectorIndex, generation: int) -> tuple[int, int]:
        """Make `vectors` hold exactly the store's passages of `generation`: (added, removed)."""
        in_store = self.store.passage_ids(generation)
        in_index = vectors.ids()
        missing = np.setdiff1d(in_store, in_index, assume_unique=True)
        orphans = np.setdiff1d(in_index, in_store, assume_unique=True)
        removed = vectors.remove(orphans) if len(orphans) else 0
        added = 0
        for ids, vecs, langs in self.store.iter_vectors(generation, missing.tolist() if len(missing) else []):
            if vecs.shape[1] != vectors.dim:
                continue
            vectors.add(ids, vecs, langs)
            added += len(ids)
        return added, removed

    def close(self) -> None:
        """Stop the checkpointer, save a last checkpoint, close the store."""
        self._stop.set()
        self._checkpointer.join(timeout=5)
        try:
            if self._dirty_since is not None:
                self.checkpoint()
            self.store.close()
        finally:
            self._lockfile.close()

    # ---- writes --------------------------------------------------------------------------------
    def validate(self, inputs: Sequence[ArticleInput]) -> list[Article]:
        """Build articles, or raise InvalidArticleError naming every bad one (by position)."""
        articles: list[Article] = []
        details: list[dict[str, object]] = []
        for i, inp in enumerate(inputs):
            try:
                articles.append(build_article(inp, max_bytes=self.config.max_article_bytes))
            except InvalidArticleError as exc:
                details.extend({**d, "index": i} for d in exc.details)
        if details:
            raise InvalidArticleError("invalid article(s) in the batch", details=details)
        return articles

    def _prepare(self, articles: Sequence[Article], embedder: Encoder) -> list[_Prepared]:
        """Split and embed articles (no lock held)."""
        max_tokens = min(self.config.max_passage_tokens, embedder.max_tokens)
        spans_per_article = [
            split_passages(
                a.text,
                embedder.count_tokens_batch,
                language=a.language,
                target_tokens=min(self.config.target_tokens, max_tokens),
                max_tokens=max_tokens,
                overlap_sentences=self.config.overlap_sentences,
            )
            for a in articles
        ]
        flat = [s.text for spans in spans_per_article for s in spans]
        vecs = embedder.encode_passages(flat) if flat else np.zeros((0, embedder.dim), dtype=np.float32)
        out: list[_Prepared] = []
        k = 0
        for a, spans in zip(articles, spans_per_article, strict=True):
            lang = a.language or "und"
            passages = [
                NewPassage(
                    ord=j,
                    char_start=s.char_start,
                    char_end=s.char_end,
                    n_tokens=s.n_tokens,
                    language=lang,
                    vector=vecs[k + j],
                    terms=terms_text(s.text, lang),
                )
                for j, s in enumerate(spans)
            ]
            k += len(spans)
            out.append(_Prepared(a, passages))
        return out

    def upsert(self, inputs: Sequence[ArticleInput]) -> list[WriteResult]:
        """Create, update or skip each article; all are searchable when this returns."""
        return self.write_articles(self.validate(inputs))

    def write_articles(self, articles: Sequence[Article]) -> list[WriteResult]:
        """Write validated articles: unchanged ones are no-ops, changed ones replace their passages."""
        # The last occurrence of an id in one batch wins.
        by_id = {a.id: a for a in articles}
        known = self.store.content_hashes(by_id)
        todo = [a for a in by_id.values() if known.get(a.id) != a.content_hash]
        while True:
            state = self.state
            prepared = self._prepare(todo, state.embedder)
            with self._write_mutex:
                if self.state is not state:  # a rebuild switched models meanwhile: embed again
                    continue
                results = self._commit(prepared, known)
                break
        self._approximate_in_background_if_large()
        unchanged = {a.id for a in by_id.values()} - {p.article.id for p in prepared}
        statuses = {r.id: r for r in results}
        for art_id in unchanged:
            n = len(self.store.article_passages(art_id, state.generation))
            statuses[art_id] = WriteResult(art_id, "unchanged", n)
        return [statuses[a_id] for a_id in by_id]

    def _commit(self, prepared: Sequence[_Prepared], known: dict[str, str]) -> list[WriteResult]:
        """One transaction for the store, then the FAISS update, under the write lock."""
        if not prepared:
            return []
        state = self.state
        gen = state.generation
        now = _now()
        results: list[WriteResult] = []
        added: list[tuple[list[int], _Prepared]] = []
        with self.lock.write():
            with self.store.transaction() as tx:
                seq = tx.next_seq()
                for p in prepared:
                    a = p.article
                    tx.upsert_article(
                        id=a.id,
                        title=a.title,
                        text=a.text,
                        url=a.url,
                        source=a.source,
                        published_at=a.published_at,
                        published_ts=published_ts(a.published_at),
                        language=a.language,
                        metadata=dict(a.metadata),
                        content_hash=a.content_hash,
                        now=now,
                        seq=seq,
                    )
                    tx.delete_passages(a.id, gen)
                    added.append((tx.insert_passages(a.id, gen, p.passages), p))
                    results.append(
                        WriteResult(a.id, "updated" if a.id in known else "created", len(p.passages))
                    )
                removed = tx.removed
            state.vectors.remove(removed)
            for ids, p in added:
                state.vectors.add(
                    np.asarray(ids, dtype=np.int64),
                    _stack([x.vector for x in p.passages], state.vectors.dim),
                    [x.language for x in p.passages],
                )
            state.means = self._means(gen)
            self._mark_dirty()
        return results

    def _rewrite_row(self, row: ArticleRow) -> None:
        """Re-split and re-embed a stored article (repair)."""
        inp = ArticleInput.model_validate(
            {
                "id": row.id,
                "title": row.title,
                "text": row.text,
                "url": row.url,
                "source": row.source,
                "published_at": row.published_at,
                "language": row.language,
                "metadata": row.metadata,
            }
        )
        article = build_article(inp, max_bytes=max(self.config.max_article_bytes, len(row.text.encode())))
        prepared = self._prepare([article], self.state.embedder)
        with self._write_mutex:
            self._commit(prepared, {row.id: row.content_hash})

    def delete(self, article_id: str) -> int:
        """Delete an article and its passages; gone from search on return. Raises NotFoundError."""
        with self._write_mutex, self.lock.write():
            with self.store.transaction() as tx:
                removed = tx.delete_article(article_id)
                if removed is None:
                    raise NotFoundError(f"article {article_id!r} not found")
                tx.next_seq()
            self.state.vectors.remove(removed)
            self.state.means = self._means(self.state.generation)
            self._mark_dirty()
        return len(removed)

    def _mark_dirty(self) -> None:
        if self._dirty_since is None:
            self._dirty_since = time.monotonic()

    # ---- reads ---------------------------------------------------------------------------------
    def get_article(self, article_id: str) -> tuple[ArticleRow, list[PassageRow]]:
        """An article with its passages in the serving generation. Raises NotFoundError."""
        with self.lock.read():
            row = self.store.get_article(article_id)
            if row is None:
                raise NotFoundError(f"article {article_id!r} not found")
            return row, self.store.article_passages(article_id, self.state.generation)

    def list_articles(self, limit: int, cursor: str | None) -> tuple[list[ArticleRow], str | None]:
        """A page of articles in id order and the cursor of the next page (None at the end)."""
        rows = self.store.list_articles(limit + 1, cursor)
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, (rows[-1].id if more and rows else None)

    def stats(self) -> ServiceStats:
        """Counts, generation and model."""
        with self.lock.read():
            st = self.state
            articles, passages = self.store.counts(st.generation)
            return ServiceStats(
                articles=articles,
                passages=passages,
                index_vectors=st.vectors.ntotal,
                generation=st.generation,
                model=st.embedder.model_id,
                dim=st.embedder.dim,
                index_kind=st.vectors.kind,
                languages=dict(st.means.counts),
            )

    def search(self, query: SearchQuery) -> SearchOutcome:
        """Ranked, cited passages for a question (raises InvalidQueryError for a blank or long one)."""
        from citesearch.index.search import run_search

        return run_search(self, query)

    # ---- full rebuild --------------------------------------------------------------------------
    def reindex(self, embedder: Encoder | None = None, progress: Progress | None = None) -> int:
        """Build a new generation (optionally with another model) while the old one serves; then switch.

        A failure leaves the old generation in place and its partial build is dropped.
        """
        report = progress or (lambda _f, _m: None)
        new_embedder = embedder or self.state.embedder
        with self._write_mutex:
            new_gen = self.state.generation + 1
            with self.store.transaction() as tx:
                tx.drop_generation(new_gen)
                tx.set_meta("building", str(new_gen))
            start_seq = self.store.seq
        try:
            vectors = VectorIndex(new_embedder.dim, kind=self._kind_for(self.store.counts(new_gen - 1)[1]))
            ids_all = self.store.article_ids()
            total = max(len(ids_all), 1)
            report(0.0, f"rebuilding {len(ids_all)} articles")
            for i in range(0, len(ids_all), 16):
                self._build_batch(ids_all[i : i + 16], new_gen, new_embedder, vectors)
                report(
                    min(0.95, (i + 16) / total * 0.95), f"{min(i + 16, len(ids_all))}/{len(ids_all)} articles"
                )
            with self._write_mutex:
                # Catch up with writes made while we were building, then switch atomically.
                changed = self.store.articles_changed_since(start_seq)
                present = set(self.store.article_ids())
                self._build_batch([a for a in changed if a in present], new_gen, new_embedder, vectors)
                with self.lock.write():
                    self._drop_deleted(new_gen, vectors, present)
                    old_gen = self.state.generation
                    with self.store.transaction() as tx:
                        tx.set_meta("generation", str(new_gen))
                        tx.set_meta(f"model:{new_gen}", new_embedder.model_id)
                        tx.set_meta(f"built:{new_gen}", _now())
                        tx.conn.execute("DELETE FROM meta WHERE key = 'building'")
                        tx.next_seq()
                    self.state = ServingState(new_gen, new_embedder, vectors, self._means(new_gen))
                with self.store.transaction() as tx:
                    tx.drop_generation(old_gen)
            self.checkpoint()
            report(1.0, f"generation {new_gen} serving")
            return new_gen
        except BaseException:
            with self._write_mutex, self.store.transaction() as tx:
                tx.drop_generation(new_gen)
                tx.conn.execute("DELETE FROM meta WHERE key = 'building'")
            raise

    def _build_batch(self, ids: Iterable[str], gen: int, embedder: Encoder, vectors: VectorIndex) -> None:
        rows = [r for r in (self.store.get_article(a) for a in ids) if r is not None]
        if not rows:
            return
        articles = [
            build_article(
                ArticleInput.model_validate(
                    {
                        "id": r.id,
                        "title": r.title,
                        "text": r.text,
                        "url": r.url,
                        "source": r.source,
                        "published_at": r.published_at,
                        "language": r.language,
                        "metadata": r.metadata,
                    }
                ),
                max_bytes=max(self.config.max_article_bytes, len(r.text.encode())),
            )
            for r in rows
        ]
        prepared = self._prepare(articles, embedder)
        with self._write_mutex, self.store.transaction() as tx:
            for p in prepared:
                gone = tx.delete_passages(p.article.id, gen)
                if gone:
                    vectors.remove(gone)
                new_ids = tx.insert_passages(p.article.id, gen, p.passages)
                if p.passages:
                    vectors.add(
                        np.asarray(new_ids, dtype=np.int64),
                        np.vstack([x.vector for x in p.passages]),
                        [x.language for x in p.passages],
                    )

    def _drop_deleted(self, gen: int, vectors: VectorIndex, present: set[str]) -> None:
        in_store = self.store.passage_ids(gen)
        orphans = np.setdiff1d(vectors.ids(), in_store)
        if len(orphans):
            vectors.remove(orphans)

    def _kind_for(self, n: int) -> Literal["flat", "hnsw"]:
        if self.config.index_kind != "auto":
            return self.config.index_kind
        return "hnsw" if n >= self.config.approx_threshold else "flat"

    # ---- search helpers used by index.search ---------------------------------------------------
    def encode_query(self, text: str) -> tuple[ServingState, npt.NDArray[np.float32]]:
        """The serving state and the query's embedding under that state's model.

        Concurrent callers share forward passes (`embeddings.batching.QueryBatcher`).
        """
        state = self.state
        with self._batchers_lock:
            batcher = self._batchers.get(state.embedder)
            if batcher is None:
                batcher = self._batchers[state.embedder] = QueryBatcher(state.embedder.encode_queries)
        return state, batcher.encode(text)


@contextlib.contextmanager
def open_service(config: IndexConfig, embedder: Encoder) -> Iterator[SearchService]:
    """A service that is closed (and checkpointed) on exit."""
    svc = SearchService(config, embedder)
    try:
        yield svc
    finally:
        svc.close()
