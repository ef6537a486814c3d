"""The search service: the one object the API and the CLI talk to.

It opens the store of record, holds the data directory, starts and stops every thread and pool,
and hands one shared `Core` (index/state.py, which states the lock order) to its parts:

- a question: `search` → `Searcher` (index/search.py);
- an article: `upsert`/`write_articles`/`delete` → `Writer` (index/writes.py);
- a full rebuild: `reindex` → `Rebuilder` (index/rebuild.py);
- repair at start-up, checkpoints, the swap to HNSW → `Maintenance` (index/maintenance.py);
- with a cluster (`ClusterConfig`): writes, deletes and reindexes go through PostgreSQL, and the
  local index follows its change log → `Replica` (index/cluster.py).

Threads it owns: the inference worker (embeddings/scheduler.py: one forward pass at a time,
questions first; a lone question on an idle scheduler runs in its caller's thread), the
early-lexical pool (BM25 while a question is encoded), the maintenance thread, and a
short-lived HNSW builder. `close()` stops them all.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

import numpy as np
import numpy.typing as npt

from citesearch.embeddings.progress import Progress
from citesearch.embeddings.scheduler import InferenceScheduler
from citesearch.index.answers import AnswerReader
from citesearch.index.articles import Article, ArticleInput
from citesearch.index.cluster import ClusterConfig, ModelLoader, Replica, ReplicaStatus
from citesearch.index.errors import ConflictError, DataDirLockedError, ModelMismatchError, NotFoundError
from citesearch.index.fairness import LanguageMeans
from citesearch.index.language import warm_up as warm_up_language_id
from citesearch.index.maintenance import Maintenance, RepairReport
from citesearch.index.rebuild import Rebuilder
from citesearch.index.search import Searcher, SearchOutcome, SearchQuery
from citesearch.index.sqlite_store import SqliteStore
from citesearch.index.state import Core, Encoder, IndexConfig, ServingState, prepare_questions
from citesearch.index.store import ArticleRow, PassageRow, Store
from citesearch.index.vectors import VectorIndex
from citesearch.index.writes import Writer, WriteResult

EARLY_LEXICAL_WORKERS = 2
"""Threads running BM25 while questions are encoded (one per core here; more only queue)."""


@dataclass(frozen=True)
class ServiceStats:
    """Corpus and index figures of the serving generation."""

    articles: int
    passages: int
    sentences: int
    index_vectors: int
    generation: int
    model: str
    dim: int
    index_kind: str
    languages: dict[str, int]
    cluster: ReplicaStatus | None = None
    """Replication figures when the service is a cluster replica."""
    engine: str = ""
    """The model's inference engine and precision (e.g. `openvino-bf16`); empty when the encoder has none."""
    query_threads: int | None = None
    """Threads a question's forward pass runs on now, as measured by the encoder (None: it does not say)."""
    query_shapes: tuple[tuple[int, int], ...] = ()
    """(tokens, threads) the encoder runs lone questions on with fixed shapes now (none: it does
    not say, or has none)."""
    stale_passages: int = 0
    """Passages stored for generations that neither serve nor are being built: 0 in a healthy store
    (a switch cut short before its drop leaves some; start-up repair removes them)."""
    answer_engine: str | None = None
    """The answer-sentence model's engine and precision; None when it is off or not prepared."""


class Reservation(Protocol):
    """The right to run one reindex (`SearchService.reserve_reindex`)."""

    def release(self) -> None:
        """Give it up (idempotent)."""
        ...


class _LocalReservation:
    """A standalone service's reindex lock, held."""

    def __init__(self, lock: threading.Lock) -> None:
        self._lock: threading.Lock | None = lock

    def release(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()


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
            f"the data directory is in use by {holder}; stop it, or send writes to its HTTP API"
        ) from exc
    fh.seek(0)
    fh.truncate()
    fh.write(f"pid {os.getpid()}")
    fh.flush()
    return fh


def _open_store(config: IndexConfig, embedder: Encoder, cache: bool = False) -> tuple[Store, int]:
    """The store of record and its serving generation, checked against the configured model.

    `cache`: the store is a replica's copy of the cluster's; a generation of another model is
    replaced by the cluster's at the first catch-up, before serving.
    """
    store = SqliteStore(config.data_dir / "store.sqlite")
    generation = store.generation
    stored_model = store.get_meta(f"model:{generation}")
    n_passages = store.counts(generation)[1]
    if stored_model is not None and stored_model != embedder.model_id and n_passages and not cache:
        store.close()
        raise ModelMismatchError(
            f"the index was built with model {stored_model!r} but {embedder.model_id!r} is configured; "
            "set CITESEARCH_MODEL to the index's model, or rebuild with `citesearch reindex`"
        )
    if stored_model is None or not n_passages:
        with store.transaction() as tx:
            tx.set_meta(f"model:{generation}", embedder.model_id)
    return store, n_passages


class SearchService:
    """Articles in, cited passages out."""

    def __init__(
        self,
        config: IndexConfig,
        embedder: Encoder,
        cluster: ClusterConfig | None = None,
        load_model: ModelLoader | None = None,
        answers: AnswerReader | None = None,
    ) -> None:
        self.config = config
        self.data_dir = config.data_dir
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lockfile = _lock_data_dir(self.data_dir)
        try:
            store, n_passages = _open_store(config, embedder, cache=cluster is not None)
        except BaseException:
            self._lockfile.close()
            raise
        self.scheduler = InferenceScheduler()
        self._pool = ThreadPoolExecutor(EARLY_LEXICAL_WORKERS, thread_name_prefix="early-lexical")
        self.core = Core(
            config,
            store,
            self.scheduler,
            ServingState(store.generation, embedder, VectorIndex(embedder.dim), LanguageMeans({}, {}, None)),
            answers=answers,
        )
        self.core.state = dataclasses.replace(
            self.core.state, vectors=VectorIndex(embedder.dim, kind=self.core.index_kind_for(n_passages))
        )
        self._writer = Writer(self.core)
        self._rebuilder = Rebuilder(self.core, self._writer)
        self._maintenance = Maintenance(self.core, self._writer)
        self._searcher = Searcher(self.core, self._pool)
        self._reindexing = threading.Lock()
        self._replica: Replica | None = None
        try:
            if cluster is not None:
                self._replica = Replica(self.core, self._writer, cluster, load_model)
                cluster_model = self._replica.open(embedder)
                if cluster_model is not embedder:
                    self.core.state = dataclasses.replace(
                        self.core.state, embedder=cluster_model, vectors=VectorIndex(cluster_model.dim)
                    )
            warm_up_language_id()  # so the first article without a language doesn't pay for it
            self.last_repair: RepairReport = self._maintenance.repair(reembed=self._replica is None)
            self._maintenance.ensure_lexical_version()
            if self._replica is not None:
                self._replica.catch_up()  # serve nothing older than the log's head at start
        except BaseException:
            self._shutdown()
            raise
        self._maintenance.start()
        if self._replica is not None:
            self._replica.start()

    # ---- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        """Stop every thread, save a last checkpoint if the index changed, close the store."""
        try:
            if self._replica is not None:
                self._replica.stop()
            self._maintenance.stop()
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        try:
            if self._replica is not None and not self._replica.pg.pool.closed:
                self._replica.pg.close()
            self.scheduler.close()
            self._pool.shutdown(wait=True)
            self.core.store.close()
        finally:
            self._lockfile.close()

    def prepare_questions(self) -> None:
        """Compile what the model runs questions on (OpenVINO's fixed-width copies, ~2 s) now, not
        on the first questions: a server calls this before it reports ready."""
        prepare_questions(self.core.state.embedder)

    @property
    def state(self) -> ServingState:
        """The serving state (replaced whole on every change)."""
        return self.core.state

    @property
    def store(self) -> Store:
        """The store of record."""
        return self.core.store

    # ---- questions -----------------------------------------------------------------------------
    def search(
        self, query: SearchQuery, query_vector: npt.NDArray[np.float32] | None = None
    ) -> SearchOutcome:
        """Ranked, cited passages for a question (InvalidQueryError for a blank or overlong one).

        `query_vector`: the question's embedding when the caller already has it (benchmarks).
        """
        return self._searcher.search(query, query_vector)

    # ---- articles ------------------------------------------------------------------------------
    def validate(self, inputs: Sequence[ArticleInput]) -> list[Article]:
        """Build articles, or raise InvalidArticleError naming every bad one (by position)."""
        return self._writer.validate(inputs)

    def upsert(self, inputs: Sequence[ArticleInput]) -> list[WriteResult]:
        """Create, update or skip each article; all are searchable when this returns."""
        return self.write_articles(self.validate(inputs))

    def write_articles(self, articles: Sequence[Article]) -> list[WriteResult]:
        """Write validated articles (unchanged ones are no-ops)."""
        results = self._replica.write(articles) if self._replica is not None else self._writer.write(articles)
        self._maintenance.promote_in_background()
        return results

    def delete(self, article_id: str) -> int:
        """Delete an article and its passages; gone from search on return. Raises NotFoundError."""
        if self._replica is not None:
            return self._replica.delete(article_id)
        return self._writer.delete(article_id)

    def get_article(self, article_id: str) -> tuple[ArticleRow, list[PassageRow]]:
        """An article with its passages in the serving generation. Raises NotFoundError."""
        with self.core.lock.read():
            row = self.core.store.get_article(article_id)
            if row is None:
                raise NotFoundError(f"article {article_id!r} not found")
            return row, self.core.store.article_passages(article_id, self.core.state.generation)

    def list_articles(self, limit: int, after: str | None) -> tuple[list[ArticleRow], str | None]:
        """A page of articles in id order after the id `after`, and the last id if more follow."""
        rows = self.core.store.list_articles(limit + 1, after)
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, (rows[-1].id if more and rows else None)

    def cluster_status(self) -> ReplicaStatus | None:
        """Replication figures, or None outside a cluster (answers without the database when it is down)."""
        return self._replica.status() if self._replica is not None else None

    def stats(self) -> ServiceStats:
        """Counts, generation and model."""
        cluster = self._replica.status() if self._replica is not None else None  # a database call: no lock
        with self.core.lock.read():
            st = self.core.state
            articles, passages = self.core.store.counts(st.generation)
            building = self.core.store.get_meta("building")
            stale = sum(
                n
                for g, n in self.core.store.generation_passages().items()
                if g != st.generation and str(g) != building
            )
            return ServiceStats(
                articles=articles,
                passages=passages,
                sentences=self.core.store.sentence_count(st.generation),
                index_vectors=st.vectors.ntotal,
                generation=st.generation,
                model=st.embedder.model_id,
                dim=st.embedder.dim,
                index_kind=st.vectors.kind,
                languages=dict(st.means.counts),
                cluster=cluster,
                engine=str(getattr(st.embedder, "engine_name", "")),
                query_threads=getattr(st.embedder, "query_threads", None),
                query_shapes=tuple(getattr(st.embedder, "query_shapes", ())),
                stale_passages=stale,
                answer_engine=None if self.core.answers is None else self.core.answers.engine_name,
            )

    # ---- long work -----------------------------------------------------------------------------
    def reserve_reindex(self) -> Reservation:
        """The right to run the next reindex, taken now, so that a caller can refuse a second one
        before it accepts it: ConflictError while a reindex runs (in a cluster, on any replica),
        StoreUnavailableError when the cluster database does not answer. Pass it to `reindex`,
        which releases it; `release()` it if the reindex never runs."""
        if self._replica is not None:
            return self._replica.reserve_reindex()
        if not self._reindexing.acquire(blocking=False):
            raise ConflictError("a reindex is already running")
        return _LocalReservation(self._reindexing)

    def reindex(
        self,
        embedder: Encoder | None = None,
        progress: Progress | None = None,
        model_name: str | None = None,
        reservation: Reservation | None = None,
    ) -> int:
        """Rebuild every passage and vector in a new generation while the old one serves; then switch.

        In a cluster the build is cluster-wide (`model_name`: what other processes load it by).
        `reservation`: from `reserve_reindex` (taken here when None); released on return.
        """
        reservation = reservation or self.reserve_reindex()
        try:
            if embedder is not None:  # a model to switch to: ready for questions before it serves them
                prepare_questions(embedder)
            if self._replica is not None:
                generation = self._replica.reindex(embedder, model_name, progress)
            else:
                generation = self._rebuilder.reindex(embedder, progress)
        finally:
            reservation.release()
        self._maintenance.checkpoint()
        return generation

    def checkpoint(self) -> None:
        """Save the FAISS index now (it is also saved some seconds after writes)."""
        self._maintenance.checkpoint()

    def go_approximate_if_large(self) -> bool:
        """With `index_kind="auto"`, swap a flat index past the threshold for HNSW now."""
        return self._maintenance.promote_if_large()

    def wait_for_background(self, timeout: float | None = None) -> None:
        """Wait for a swap to HNSW started by a write (tests, benchmarks)."""
        self._maintenance.wait_for_background(timeout)


__all__ = [
    "Encoder",
    "IndexConfig",
    "Reservation",
    "SearchService",
    "ServiceStats",
    "ServingState",
    "WriteResult",
]
