"""A replica of a cluster: its local index is a materialized view of PostgreSQL's change log.

With `CITESEARCH_DATABASE_URL` set, `SearchService` hands writes, deletes and reindexes to a
`Replica`, which owns two threads:

- the applier: reads the log after the last applied number, in one snapshot fetches the current
  rows and passages (with vectors) of the articles it names, and applies them to the local store
  and FAISS index in one local transaction that also records the new applied number. A kill -9
  leaves the local store before or after that transaction, so a restart resumes exactly. A fresh
  data dir, or a generation switch, loads the whole serving generation from PostgreSQL: no model
  call, the vectors are there. NOTIFY wakes it; it also polls every `poll_s`.
- the build worker: while a cluster-wide reindex runs, claims batches of the new generation
  (`SELECT ... FOR UPDATE SKIP LOCKED`, with a lease) and embeds them, like `citesearch worker`.

A write is validated, split and embedded here, committed to PostgreSQL in one transaction, and
answered once the applier has applied it (read your own writes). Lock order: the applier takes the
core's `write_mutex` then `lock` (index/state.py); it never holds them across a database call.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import numpy as np
import psycopg

from citesearch.embeddings.progress import Progress
from citesearch.embeddings.scheduler import InferenceScheduler, Priority
from citesearch.index.articles import Article
from citesearch.index.errors import ConflictError, ModelMismatchError, NotFoundError, StoreUnavailableError
from citesearch.index.fairness import LanguageMeans
from citesearch.index.lexical import terms_text
from citesearch.index.pg_store import (
    REINDEX_LOCK,
    Changes,
    Claim,
    GenerationChangedError,
    Head,
    PgArticle,
    PgPassage,
    PgStore,
)
from citesearch.index.sqlite_store import SqliteStore
from citesearch.index.state import Core, Encoder, IndexConfig, ServingState, prepare_questions
from citesearch.index.store import NewPassage, Sentences, StoreTransaction
from citesearch.index.vectors import VectorIndex
from citesearch.index.writes import Prepared, Writer, WriteResult, WriteStatus, add_passages, now_iso

log = logging.getLogger("citesearch.cluster")

APPLIED_KEY = "cluster:applied_seq"
CLUSTER_ID_KEY = "cluster:id"
CATCH_UP_ROUNDS = 3
FINAL_CATCH_UP = 16
WAIT_APPLIED_S = 60.0

P = ParamSpec("P")
T = TypeVar("T")
ModelLoader = Callable[[str | None], Encoder]
"""Loads a model by the name a reindex gave (None: the configured one)."""
Prepare = Callable[[Sequence[Article], Encoder], list[Prepared]]


@dataclass
class ClusterConfig:
    """How a replica or a worker reaches the cluster; the API builds it from its settings."""

    url: str
    poll_s: float = 0.5
    lease_s: float = 30.0
    timeout_s: float = 5.0
    build_batch: int = 16
    build_worker: bool = True
    """Whether this replica embeds batches of a cluster-wide reindex too."""
    worker_name: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")


class ReindexLock:
    """The cluster's reindex lock (a session advisory lock), held on a connection of its own from
    before a reindex is accepted until it ends; `release` (idempotent) closes the session."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def release(self) -> None:
        """Let the next reindex start, on any replica."""
        if not self._conn.closed:
            self._conn.close()


@dataclass(frozen=True)
class ReplicaStatus:
    """Where this replica stands against the log."""

    applied_seq: int
    head_seq: int
    lag_entries: int
    lag_seconds: float | None
    writable: bool


def local_passages(text: str, passages: Sequence[PgPassage]) -> list[NewPassage]:
    """Passages from the cluster store, with their lexical terms derived here (the scheme is local).

    Sentences come from the store of record as they were embedded: a replica never calls the model.
    A row written before the cluster stored sentences (NULL) gets the passage as its one sentence,
    with the passage vector: what ingest does with sentence vectors switched off. Search then scores
    such a passage by its own vector and highlights all of it; the next cluster-wide reindex
    embeds its sentences. Re-embedding them here instead would call the model on every replica and
    leave the store of record without them.
    """
    return [
        NewPassage(
            p.ord,
            p.char_start,
            p.char_end,
            p.n_tokens,
            p.language,
            p.vector,
            terms_text(text[p.char_start : p.char_end], p.language),
            p.sentences if p.sentences is not None else _whole_passage(p),
        )
        for p in passages
    ]


def _whole_passage(p: PgPassage) -> Sentences:
    """The passage as its one sentence (a row stored without sentences)."""
    spans = np.array([[p.char_start, p.char_end]], dtype=np.int32)
    return Sentences(spans, np.asarray(p.vector, dtype=np.float32).reshape(1, -1))


@contextlib.contextmanager
def _heartbeat(pg: PgStore, claim: Claim, worker: str, lease_s: float) -> Iterator[None]:
    """Renew the lease every third of it while the batch is embedded (a slow machine keeps its batch;
    a dead one stops renewing and the batch is claimed again)."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(lease_s / 3):
            with contextlib.suppress(StoreUnavailableError):
                pg.renew(claim, worker, lease_s)

    thread = threading.Thread(target=beat, name="lease-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def work_one_batch(
    pg: PgStore, worker: str, lease_s: float, prepare: Prepare, embedder_for: Callable[[Claim], Encoder]
) -> bool:
    """Claim one batch of the generation being built, embed it, store it; False when none is free.

    A worker killed here loses nothing: its lease runs out and another worker claims the batch.
    """
    claim = pg.claim(worker, lease_s)
    if claim is None:
        return False
    embedder = embedder_for(claim)
    if embedder.model_id != claim.model_id:
        raise ModelMismatchError(
            f"the build needs model {claim.model_id!r}, this worker has {embedder.model_id!r}"
        )
    rows = pg.articles(claim.article_ids)
    with _heartbeat(pg, claim, worker, lease_s):
        prepared = prepare([r.article for r in rows], embedder)
    if not pg.finish(claim, worker, [(p.article, p.passages) for p in prepared]):
        log.warning("batch %d of generation %d was taken over (lease ran out)", claim.no, claim.generation)
    return True


class Replica:
    """The cluster side of a `SearchService`: applier, build worker, writes through PostgreSQL."""

    def __init__(
        self, core: Core, writer: Writer, config: ClusterConfig, load_model: ModelLoader | None
    ) -> None:
        self.core = core
        self.writer = writer
        self.config = config
        self.pg = PgStore(config.url, timeout_s=config.timeout_s)
        self._load_model = load_model
        self._models: dict[str, Encoder] = {}
        self._stop = threading.Event()
        self._applied_cond = threading.Condition()
        self.applied = int(core.store.get_meta(APPLIED_KEY) or 0)
        self.head_seen = self.applied
        self.reachable = False
        self._threads: list[threading.Thread] = []
        self._incomplete: set[str] = set()

    # ---- start-up ------------------------------------------------------------------------------
    def open(self, embedder: Encoder) -> Encoder:
        """Join the cluster: create its tables if first, check this data dir belongs to it, and
        return the model of the serving generation (loaded when it is not `embedder`).

        Raises StoreUnavailableError when the database cannot be reached and this data dir has
        never caught up (a fresh replica has nothing to serve without it).
        """
        self._models[embedder.model_id] = embedder
        try:
            cluster_id = self.pg.ensure_schema(embedder.model_id)
            head = self.pg.head()
            dropped = self.pg.drop_retired()  # a coordinator killed between its switch and its drop
        except StoreUnavailableError:
            if self.core.store.get_meta(CLUSTER_ID_KEY) is None:
                raise
            log.warning("the cluster database is unreachable: serving the local index, writes refused")
            return embedder
        if dropped:
            log.warning("dropped %d passages of generations that no longer serve", dropped)
        self._claim_data_dir(cluster_id)
        self._refetch_incomplete()
        self.reachable = True
        self.head_seen = head.seq
        return self._embedder_for(head.model_id, head.model_name)

    def _claim_data_dir(self, cluster_id: str) -> None:
        store = self.core.store
        local = store.get_meta(CLUSTER_ID_KEY)
        if local == cluster_id:
            return
        if local is not None or store.counts(store.generation)[0]:
            raise ConflictError(
                "the data directory holds another index (standalone or of another cluster); "
                "give each replica an empty data directory of its own"
            )
        with store.transaction() as tx:
            tx.set_meta(CLUSTER_ID_KEY, cluster_id)

    def _refetch_incomplete(self) -> None:
        """Fetch again from the store of record the local articles left without passages or sentences
        (a store written before sentences existed, or a partial copy): the next apply reloads the whole
        generation, and `_same` does not skip these. Start-up repair does not re-embed on a replica."""
        store = self.core.store
        gen = store.generation
        self._incomplete = {*store.articles_without_passages(gen), *store.articles_without_sentences(gen)}
        if self._incomplete:
            log.info("%d local articles lack passages or sentences: reloading them", len(self._incomplete))
            self.applied = 0

    def _embedder_for(self, model_id: str, model_name: str | None) -> Encoder:
        """The model of a generation: one already loaded, else loaded by its name."""
        if model_id in self._models:
            return self._models[model_id]
        if self._load_model is None:
            raise ModelMismatchError(f"the cluster serves model {model_id!r}, which this process cannot load")
        loaded = self._load_model(model_name)
        if loaded.model_id != model_id:
            raise ModelMismatchError(
                f"the cluster serves model {model_id!r}; {model_name!r} loads {loaded.model_id!r} here"
            )
        prepare_questions(loaded)  # it may serve questions soon: not on its first ones
        self._models[model_id] = loaded
        return loaded

    def catch_up(self, deadline_s: float = 600.0) -> None:
        """Apply the log up to its head now (before serving), if the database answers."""
        end = time.monotonic() + deadline_s
        with contextlib.suppress(StoreUnavailableError):
            while time.monotonic() < end and self.apply_once():
                pass

    def start(self) -> None:
        """Start the applier and, if configured, the build worker."""
        self._threads.append(threading.Thread(target=self._apply_loop, name="cluster-applier", daemon=True))
        if self.config.build_worker:
            self._threads.append(
                threading.Thread(target=self._build_loop, name="cluster-builder", daemon=True)
            )
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        """Stop the threads and close the pool."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)
        self.pg.close()

    # ---- the applier -----------------------------------------------------------------------------
    def _apply_loop(self) -> None:
        listen: psycopg.Connection[Any] | None = None
        backoff = 0.2
        while not self._stop.is_set():
            try:
                if listen is None:
                    listen = self.pg.listen_connection()
                if not self.apply_once():
                    for _ in listen.notifies(timeout=self.config.poll_s, stop_after=1):
                        pass
                backoff = 0.2
            except (StoreUnavailableError, psycopg.Error) as exc:
                if self.reachable:
                    log.warning(
                        "cluster database unreachable (%s): serving the local index", type(exc).__name__
                    )
                self.reachable = False
                if listen is not None:
                    with contextlib.suppress(Exception):
                        listen.close()
                listen = None
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 2.0)
            except Exception:
                log.exception("applying the change log failed; retrying")
                self._stop.wait(1.0)
        if listen is not None:
            listen.close()

    def apply_once(self) -> bool:
        """Apply the next changes; False when there were none."""
        changes = self.pg.changes(self.applied, self.core.state.generation)
        self.reachable = True
        if changes is None:
            self.head_seen = max(self.head_seen, self.applied)
            return False
        self.head_seen = max(self.head_seen, changes.head.seq)
        if changes.head.generation != self.core.state.generation:
            self._load_generation(changes)
        else:
            self._apply(changes)
        with self._applied_cond:
            self.applied = changes.upto
            self._applied_cond.notify_all()
        return True

    def _apply(self, ch: Changes) -> None:
        """Bring the named articles in line with the store of record, in one local transaction."""
        core = self.core
        with core.write_mutex, ExitStack() as exclusive:
            gen = core.state.generation
            added: list[tuple[list[int], list[NewPassage]]] = []
            with core.store.transaction() as tx:
                seq = tx.next_seq()
                gone = ch.gone
                if ch.full:  # a fresh data dir, or one that missed entries: drop what the cluster lacks
                    gone = [a for a in core.store.article_ids() if a not in ch.articles]
                for art_id in gone:
                    tx.delete_article(art_id)
                for pa in ch.articles.values():
                    if not self._same(pa, gen):
                        tx.delete_passages(pa.article.id, gen)
                        added.append(self._put(tx, pa, ch.passages.get(pa.article.id, []), gen, seq))
                tx.set_meta(APPLIED_KEY, str(ch.upto))
                removed = tx.removed
            if ch.full:
                self._incomplete.clear()
                exclusive.enter_context(core.lock.write())
            state = core.state
            state.vectors.remove(removed)
            for ids, passages in added:
                add_passages(state.vectors, ids, passages)
            core.state = dataclasses.replace(state, means=core.means(gen))
            core.mark_dirty()

    def _same(self, pa: PgArticle, gen: int) -> bool:
        """True when the local copy is already this version (a re-applied entry)."""
        row = self.core.store.get_article(pa.article.id)
        return (
            pa.article.id not in self._incomplete
            and row is not None
            and row.content_hash == pa.article.content_hash
            and row.updated_at == pa.updated_at
            and bool(self.core.store.article_passages(pa.article.id, gen))
        )

    @staticmethod
    def _put(
        tx: StoreTransaction, pa: PgArticle, passages: Sequence[PgPassage], gen: int, seq: int
    ) -> tuple[list[int], list[NewPassage]]:
        tx.upsert_article(pa.article, now=pa.updated_at, seq=seq, created_at=pa.created_at)
        local = local_passages(pa.article.text, passages)
        return tx.insert_passages(pa.article.id, gen, local), local

    def _load_generation(self, ch: Changes) -> None:
        """Serve the cluster's generation: load all of it from the store of record, then switch."""
        core = self.core
        embedder = self._embedder_for(ch.head.model_id, ch.head.model_name)
        new_gen = ch.head.generation
        n = sum(len(p) for p in ch.passages.values())
        vectors = VectorIndex(embedder.dim, kind=core.index_kind_for(n))
        with core.write_mutex, ExitStack() as exclusive:
            with core.store.transaction() as tx:
                tx.drop_generation(new_gen)
                seq = tx.next_seq()
                for art_id in set(core.store.article_ids()) - ch.articles.keys():
                    tx.delete_article(art_id)
                for pa in ch.articles.values():
                    ids, local = self._put(tx, pa, ch.passages.get(pa.article.id, []), new_gen, seq)
                    add_passages(vectors, ids, local)
                tx.set_meta("generation", str(new_gen))
                tx.set_meta(f"model:{new_gen}", embedder.model_id)
                tx.set_meta(f"built:{new_gen}", now_iso())
                tx.set_meta(APPLIED_KEY, str(ch.upto))
                exclusive.enter_context(core.lock.write())
            core.state = ServingState(new_gen, embedder, vectors, core.means(new_gen))
            core.mark_dirty()
            with core.store.transaction() as tx:  # a kill before this: start-up repair drops it
                tx.drop_generations_except([new_gen])
        log.info("now serving generation %d (%s): %d passages", new_gen, embedder.model_id, n)

    def wait_applied(self, seq: int, timeout: float = WAIT_APPLIED_S) -> bool:
        """Wait until the local index holds log entry `seq` (read your own writes)."""
        with self._applied_cond:
            return self._applied_cond.wait_for(lambda: self.applied >= seq, timeout)

    # ---- writes ----------------------------------------------------------------------------------
    def write(self, articles: Sequence[Article]) -> list[WriteResult]:
        """Embed here, commit to the store of record, answer once applied here."""
        by_id = {a.id: a for a in articles}
        counts: dict[str, int] = {}
        status: dict[str, WriteStatus] = {}
        while True:
            state = self.core.state
            known, head = self._db(self.pg.content_hashes, list(by_id))
            todo = [a for a in by_id.values() if known.get(a.id) != a.content_hash]
            if not todo:
                seq = head
                break
            prepared = self.writer.prepare(todo, state.embedder)
            counts = {p.article.id: len(p.passages) for p in prepared}
            try:
                seq, status = self._db(
                    self.pg.write, [(p.article, p.passages) for p in prepared], state.generation, now_iso()
                )
                break
            except GenerationChangedError:  # a switch: embed again once this replica serves it
                self.wait_applied(self.head_seen + 1)
        if not self.wait_applied(seq):
            log.warning("write committed as %d but not applied here within %.0f s", seq, WAIT_APPLIED_S)
        gen = self.core.state.generation
        return [
            WriteResult(
                i,
                status.get(i, "unchanged"),
                counts[i]
                if status.get(i, "unchanged") != "unchanged"
                else len(self.core.store.article_passages(i, gen)),
            )
            for i in by_id
        ]

    def delete(self, article_id: str) -> int:
        """Delete through the store of record; gone here on return. Raises NotFoundError."""
        done = self._db(self.pg.delete, article_id)
        if done is None:
            raise NotFoundError(f"article {article_id!r} not found")
        seq, n = done
        self.wait_applied(seq)
        return n

    def _db(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Call the store of record, keeping `reachable` current."""
        try:
            out = fn(*args, **kwargs)
        except StoreUnavailableError:
            self.reachable = False
            raise
        self.reachable = True
        return out

    # ---- status ----------------------------------------------------------------------------------
    def status(self) -> ReplicaStatus:
        """Applied number, log head, lag, and whether writes are accepted now."""
        lag_s: float | None = None
        if self.reachable:
            try:
                head, lag_s = self.pg.lag(self.applied)
                self.head_seen = max(self.head_seen, head)
            except StoreUnavailableError:
                self.reachable = False
        head = max(self.head_seen, self.applied)
        return ReplicaStatus(self.applied, head, head - self.applied, lag_s, self.reachable)

    # ---- cluster-wide reindex ----------------------------------------------------------------
    def _prepare(self, articles: Sequence[Article], embedder: Encoder) -> list[Prepared]:
        return self.writer.prepare(articles, embedder, Priority.REBUILD)

    def _claim_embedder(self, claim: Claim) -> Encoder:
        return self._embedder_for(claim.model_id, claim.model_name)

    def _build_loop(self) -> None:
        name = f"{self.config.worker_name}/replica"
        while not self._stop.wait(self.config.poll_s * 2):
            try:
                while not self._stop.is_set() and work_one_batch(
                    self.pg, name, self.config.lease_s, self._prepare, self._claim_embedder
                ):
                    pass
            except (StoreUnavailableError, psycopg.Error):
                pass  # the applier reports the outage
            except Exception:
                log.exception("embedding a reindex batch failed; retrying")
                self._stop.wait(5.0)

    def reserve_reindex(self) -> ReindexLock:
        """Take the cluster's reindex lock now (before a reindex is accepted): ConflictError when a
        reindex holds it on any replica, StoreUnavailableError when the database does not answer."""
        try:
            conn = psycopg.connect(
                self.config.url, autocommit=True, connect_timeout=max(1, round(self.config.timeout_s))
            )
        except psycopg.OperationalError as exc:
            self.reachable = False
            raise StoreUnavailableError(
                "the cluster database is unreachable: a reindex cannot start until it is back"
            ) from exc
        try:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (REINDEX_LOCK,)).fetchone()
        except psycopg.Error as exc:
            conn.close()
            raise StoreUnavailableError("the cluster database is unreachable") from exc
        if row is None or not row[0]:
            conn.close()
            raise ConflictError("a reindex is already running in the cluster")
        return ReindexLock(conn)

    def reindex(self, embedder: Encoder | None, model_name: str | None, progress: Progress | None) -> int:
        """Build a new generation across the cluster, then switch everywhere. The caller holds the
        cluster's reindex lock (`reserve_reindex`) for all of it: one reindex at a time."""
        report = progress or (lambda _f, _m: None)
        embedder = embedder or self.core.state.embedder
        self._models.setdefault(embedder.model_id, embedder)
        gen, batches, start = self.pg.start_build(embedder.model_id, model_name, self.config.build_batch)
        report(0.0, f"generation {gen}: {batches} batches")
        try:
            self._build_all(gen, report)
            head = self._switch(gen, start, embedder)
        except BaseException:
            with contextlib.suppress(Exception):
                self.pg.abandon(gen)
            raise
        self.pg.drop_retired()
        self.wait_applied(head)
        report(1.0, f"generation {gen} serving")
        return gen

    def _build_all(self, gen: int, report: Progress) -> None:
        """Work on batches beside the other workers until every batch of `gen` is done."""
        name = f"{self.config.worker_name}/reindex"
        while True:
            worked = work_one_batch(self.pg, name, self.config.lease_s, self._prepare, self._claim_embedder)
            done, total = self.pg.build_progress(gen)
            report(0.9 * done / max(total, 1), f"{done}/{total} batches")
            if done >= total:
                return
            if not worked:
                self._stop.wait(self.config.poll_s)

    def _switch(self, gen: int, start: int, embedder: Encoder) -> int:
        """Re-embed what changed during the build (rounds, then the last few under the switch lock)."""
        seq = start
        for _ in range(CATCH_UP_ROUNDS):
            changed, mark = self.pg.changed_since(seq)
            if len(changed) <= FINAL_CATCH_UP:
                break
            prepared = self._prepare([a.article for a in changed], embedder)
            self.pg.store_built(gen, [(p.article, p.passages) for p in prepared])
            seq = mark
        with self.pg.switching(gen) as sw:
            changed_ids = {a.article.id for a in sw.changed_since(seq)}
            missing = set(sw.missing())
            rows = self.pg.articles(sorted(changed_ids | missing)) if changed_ids | missing else []
            for p in self._prepare([r.article for r in rows], embedder):
                sw.put(p.article.id, p.passages)
            return sw.commit_switch()


def run_worker(
    cluster: ClusterConfig,
    index: IndexConfig,
    load_model: ModelLoader,
    stop: threading.Event,
    *,
    once: bool = False,
    on_ready: Callable[[], None] | None = None,
    on_batch: Callable[[], None] | None = None,
) -> int:
    """`citesearch worker`: embed batches of cluster-wide reindexes until stopped; returns batches done.

    With `once`, return when no reindex is running. The worker has no index of its own: its
    writer only splits and embeds (its scratch store stays empty).
    """
    pg = PgStore(cluster.url, timeout_s=cluster.timeout_s, max_size=2)
    scheduler = InferenceScheduler()
    configured = load_model(None)  # loaded up front: a build usually re-embeds with this model
    models: dict[str, Encoder] = {configured.model_id: configured}
    done = 0
    try:
        with tempfile.TemporaryDirectory(prefix="citesearch-worker-") as scratch:
            cfg = dataclasses.replace(index, data_dir=Path(scratch))
            store = SqliteStore(Path(scratch) / "scratch.sqlite")
            placeholder = ServingState(0, _NoModel(), VectorIndex(1), LanguageMeans({}, {}, None))
            writer = Writer(Core(cfg, store, scheduler, placeholder))

            def embedder_for(claim: Claim) -> Encoder:
                if claim.model_id not in models:
                    models[claim.model_id] = load_model(claim.model_name)
                return models[claim.model_id]

            def prepare(articles: Sequence[Article], embedder: Encoder) -> list[Prepared]:
                return writer.prepare(articles, embedder)

            if on_ready is not None:
                on_ready()
            while not stop.is_set():
                try:
                    if work_one_batch(pg, cluster.worker_name, cluster.lease_s, prepare, embedder_for):
                        done += 1
                        if on_batch is not None:
                            on_batch()
                        continue
                    if once and not pg.building():
                        break
                except StoreUnavailableError:
                    log.warning("cluster database unreachable; retrying")
                stop.wait(cluster.poll_s)
            store.close()
    finally:
        scheduler.close()
        pg.close()
    return done


class _NoModel:
    """The placeholder model of a worker's scratch core: the worker always passes the build's model."""

    dim = 1
    model_id = "none"
    max_tokens = 512

    def encode_queries(self, texts: list[str]) -> Any:
        raise NotImplementedError

    def encode_passages(self, texts: list[str]) -> Any:
        raise NotImplementedError

    def count_tokens_batch(self, texts: list[str]) -> list[int]:
        raise NotImplementedError


__all__ = [
    "ClusterConfig",
    "Head",
    "ModelLoader",
    "ReindexLock",
    "Replica",
    "ReplicaStatus",
    "run_worker",
    "work_one_batch",
]
