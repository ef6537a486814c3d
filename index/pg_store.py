"""PostgreSQL as the shared store of record of a cluster of replicas (`CITESEARCH_DATABASE_URL`).

What lives here: articles, their passages with vectors (float32 bytes) per generation, the
generations (each one a model and a state: building, serving, retired, abandoned), the batches of a
generation being built, and the change log. Every committed change (an article written or deleted,
a generation switched) takes the next number of `log_head.seq` and leaves one `change_log` row.

Why a counter row and not a bare sequence: a sequence hands out numbers at insert time, so a
reader could see seq 11 committed while seq 10 is still open and skip it forever. Writers update
the one `log_head` row last, just before commit; the row lock makes commits happen in seq order,
so "every entry up to the head I read" is always complete. NOTIFY wakes the replicas; the log is
the truth (a notification is lost while a listener is disconnected, the rows are not).

Lock order inside a transaction (never the other way): `serving` (SHARE for writes, UPDATE for a
switch), then article rows in id order, then `log_head`. The cluster-wide reindex holds a session
advisory lock (`REINDEX_LOCK`) for its life, so one runs at a time.

Passages carry their own columns; a passage's sentences (spans and vectors, `Sentences.to_bytes`)
are one more `bytea` column, written in the same statement as the passage, so a write, a delete, a
rebuild batch and the change log cover them exactly like the passage. Rows written before that
column existed hold NULL there (see `PgPassage.sentences`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import psycopg
import psycopg_pool
from psycopg import sql

from citesearch.index.articles import Article
from citesearch.index.errors import StoreUnavailableError
from citesearch.index.store import NewPassage, Sentences, Vector

NOTIFY_CHANNEL = "citesearch_log"
REINDEX_LOCK = 0x63697465  # "cite": the advisory lock a cluster-wide reindex holds
_SCHEMA_LOCK = 0x63697466

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE IF NOT EXISTS serving (
    one boolean PRIMARY KEY DEFAULT true CHECK (one), generation integer NOT NULL);
CREATE TABLE IF NOT EXISTS log_head (
    one boolean PRIMARY KEY DEFAULT true CHECK (one), seq bigint NOT NULL);
CREATE TABLE IF NOT EXISTS generations (
    generation integer PRIMARY KEY,
    model_id text NOT NULL,
    model_name text,
    state text NOT NULL,
    start_seq bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    switched_at timestamptz);
CREATE TABLE IF NOT EXISTS articles (
    id text PRIMARY KEY,
    title text, text text NOT NULL, url text, source text, published_at text, language text,
    metadata text NOT NULL, content_hash text NOT NULL,
    created_at text NOT NULL, updated_at text NOT NULL, seq bigint NOT NULL);
CREATE INDEX IF NOT EXISTS articles_seq ON articles(seq);
CREATE TABLE IF NOT EXISTS passages (
    generation integer NOT NULL,
    article_id text NOT NULL REFERENCES articles(id) ON DELETE CASCADE,
    ord integer NOT NULL,
    char_start integer NOT NULL, char_end integer NOT NULL, n_tokens integer NOT NULL,
    language text NOT NULL,
    vector bytea NOT NULL,
    sentences bytea,
    n_sentences integer NOT NULL DEFAULT 0,
    PRIMARY KEY (generation, article_id, ord));
ALTER TABLE passages ADD COLUMN IF NOT EXISTS sentences bytea;
ALTER TABLE passages ADD COLUMN IF NOT EXISTS n_sentences integer NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS passages_article ON passages(article_id);
CREATE TABLE IF NOT EXISTS change_log (
    seq bigint PRIMARY KEY,
    kind text NOT NULL,
    article_id text,
    generation integer NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE TABLE IF NOT EXISTS batches (
    generation integer NOT NULL, no integer NOT NULL,
    article_ids text[] NOT NULL,
    done boolean NOT NULL DEFAULT false,
    worker text, lease_until timestamptz, passages integer,
    PRIMARY KEY (generation, no));
"""

_ARTICLE_COLS = (
    "id, title, text, url, source, published_at, language, metadata, content_hash, created_at, updated_at"
)
_PASSAGE_COLS = "article_id, ord, char_start, char_end, n_tokens, language, vector, sentences, n_sentences"


@dataclass(frozen=True)
class PgArticle:
    """An article row of the cluster store, with the timestamps every replica copies as they are."""

    article: Article
    created_at: str
    updated_at: str


@dataclass(frozen=True)
class PgPassage:
    """A passage of one generation: span, language, vector and sentences (lexical terms are derived
    locally). `sentences` is None for a row written before the cluster stored them (a cluster-wide
    reindex fills them); replicas then use the passage as its one sentence (index/cluster.py)."""

    ord: int
    char_start: int
    char_end: int
    n_tokens: int
    language: str
    vector: Vector
    sentences: Sentences | None


@dataclass(frozen=True)
class Head:
    """Where the cluster stands: serving generation, its model, the last log sequence number."""

    generation: int
    model_id: str
    model_name: str | None
    seq: int


@dataclass
class Changes:
    """What a replica must apply, read in one snapshot.

    `full`: the replica must load the whole generation (it is fresh, a switch happened, or the
    entries it needs were pruned from the log):
    `articles` then holds every article. Otherwise `articles` holds the current rows of the
    articles named by the entries up to `upto`, and `gone` those deleted.
    """

    head: Head
    upto: int
    full: bool
    articles: dict[str, PgArticle]
    passages: dict[str, list[PgPassage]]
    gone: list[str]


@dataclass(frozen=True)
class Claim:
    """A batch of a generation being built, leased to one worker."""

    generation: int
    no: int
    article_ids: list[str]
    model_id: str
    model_name: str | None


class GenerationChangedError(Exception):
    """The cluster switched generations after this replica embedded: embed again with the new one."""


def _article(row: Sequence[Any]) -> PgArticle:
    article = Article(
        id=row[0],
        title=row[1],
        text=row[2],
        url=row[3],
        source=row[4],
        published_at=row[5],
        language=row[6],
        metadata=json.loads(row[7]),
        content_hash=row[8],
    )
    return PgArticle(article, created_at=row[9], updated_at=row[10])


def _passage(row: Sequence[Any]) -> PgPassage:
    sentences = None if row[7] is None else Sentences.from_bytes(bytes(row[7]))
    return PgPassage(
        row[1], row[2], row[3], row[4], row[5], np.frombuffer(row[6], dtype=np.float32).copy(), sentences
    )


def _vector_bytes(vec: Vector) -> bytes:
    return np.ascontiguousarray(vec, dtype=np.float32).tobytes()


class PgStore:
    """The cluster's store of record; every method is one transaction, or none on error.

    Connection failures surface as `StoreUnavailableError` (HTTP 503): the pool reconnects by
    itself once the database is back, so writes work again without a restart.
    """

    def __init__(self, url: str, *, timeout_s: float = 5.0, max_size: int = 8) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.pool = psycopg_pool.ConnectionPool(
            url,
            min_size=1,
            max_size=max_size,
            open=False,
            timeout=timeout_s,
            kwargs={"connect_timeout": max(1, int(timeout_s)), "autocommit": True},
            check=psycopg_pool.ConnectionPool.check_connection,
            reconnect_timeout=3600 * 24 * 365,  # keep trying: the database comes back
            name="citesearch",
        )
        self.pool.open(wait=False)

    def close(self) -> None:
        """Close every connection."""
        self.pool.close()

    @contextmanager
    def _tx(self, *, repeatable: bool = False) -> Iterator[psycopg.Connection[Any]]:
        """A connection inside a transaction; connection trouble becomes StoreUnavailableError."""
        try:
            with self.pool.connection() as conn:
                if repeatable:
                    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
                try:
                    with conn.transaction():
                        yield conn
                finally:
                    conn.isolation_level = None
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as exc:
            raise StoreUnavailableError(
                "the cluster database is unreachable: searches are served, writes are refused until it is back"
            ) from exc

    def listen_connection(self) -> psycopg.Connection[Any]:
        """A connection of its own, listening on the change channel (the applier owns it)."""
        conn = psycopg.connect(self.url, autocommit=True, connect_timeout=max(1, int(self.timeout_s)))
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(NOTIFY_CHANNEL)))
        return conn

    # ---- set-up ------------------------------------------------------------------------------
    def ensure_schema(self, model_id: str) -> str:
        """Create the tables once (first replica wins) and return the cluster id."""
        with self._tx() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            conn.execute(_SCHEMA)
            conn.execute(
                "INSERT INTO meta VALUES ('cluster_id', %s) ON CONFLICT DO NOTHING", (uuid.uuid4().hex,)
            )
            conn.execute("INSERT INTO serving VALUES (true, 1) ON CONFLICT DO NOTHING")
            conn.execute("INSERT INTO log_head VALUES (true, 0) ON CONFLICT DO NOTHING")
            conn.execute(
                "INSERT INTO generations(generation, model_id, state) VALUES (1, %s, 'serving') "
                "ON CONFLICT DO NOTHING",
                (model_id,),
            )
            row = conn.execute("SELECT value FROM meta WHERE key = 'cluster_id'").fetchone()
        assert row is not None
        return str(row[0])

    # ---- reads -------------------------------------------------------------------------------
    def _head(self, conn: psycopg.Connection[Any]) -> Head:
        row = conn.execute(
            "SELECT s.generation, g.model_id, g.model_name, h.seq FROM serving s, log_head h, generations g "
            "WHERE g.generation = s.generation"
        ).fetchone()
        assert row is not None
        return Head(int(row[0]), str(row[1]), row[2], int(row[3]))

    def head(self) -> Head:
        """The serving generation, its model and the log head."""
        with self._tx() as conn:
            return self._head(conn)

    def lag(self, applied: int) -> tuple[int, float]:
        """(log head, seconds since the oldest entry after `applied` was committed; 0 when none)."""
        with self._tx() as conn:
            row = conn.execute(
                "SELECT (SELECT seq FROM log_head), "
                "extract(epoch FROM clock_timestamp() - min(committed_at)) FROM change_log WHERE seq > %s",
                (applied,),
            ).fetchone()
        assert row is not None
        return int(row[0]), float(row[1] or 0.0)

    def content_hashes(self, ids: Sequence[str]) -> tuple[dict[str, str], int]:
        """The content hash of each known article among `ids`, and the log head they were read at."""
        with self._tx() as conn:
            rows = conn.execute("SELECT id, content_hash FROM articles WHERE id = ANY(%s)", (list(ids),))
            hashes = {r[0]: r[1] for r in rows}
            head = conn.execute("SELECT seq FROM log_head").fetchone()
        assert head is not None
        return hashes, int(head[0])

    def articles(self, ids: Sequence[str]) -> list[PgArticle]:
        """Articles by id (unknown ids are left out)."""
        with self._tx() as conn:
            rows = conn.execute(f"SELECT {_ARTICLE_COLS} FROM articles WHERE id = ANY(%s)", (list(ids),))
            return [_article(r) for r in rows]

    def changes(self, applied: int, local_generation: int, limit: int = 1000) -> Changes | None:
        """What a replica at (`applied`, `local_generation`) must apply next, read in one snapshot."""
        with self._tx(repeatable=True) as conn:
            head = self._head(conn)
            if head.generation != local_generation or (applied == 0 and head.seq > 0):
                return self._full(conn, head)
            if head.seq <= applied:
                return None
            entries = conn.execute(
                "SELECT seq, article_id FROM change_log WHERE seq > %s AND seq <= %s ORDER BY seq LIMIT %s",
                (applied, head.seq, limit),
            ).fetchall()
            if not entries or int(entries[0][0]) != applied + 1:  # the entries it needs were pruned
                return self._full(conn, head)
            ids = sorted({str(e[1]) for e in entries if e[1] is not None})
            arts = {
                a.article.id: a
                for a in map(
                    _article,
                    conn.execute(f"SELECT {_ARTICLE_COLS} FROM articles WHERE id = ANY(%s)", (ids,)),
                )
            }
            passages = self._passages(conn, head.generation, list(arts))
            upto = int(entries[-1][0]) if entries else head.seq
            return Changes(head, upto, False, arts, passages, [i for i in ids if i not in arts])

    def _full(self, conn: psycopg.Connection[Any], head: Head) -> Changes:
        arts = {a.article.id: a for a in map(_article, conn.execute(f"SELECT {_ARTICLE_COLS} FROM articles"))}
        return Changes(head, head.seq, True, arts, self._passages(conn, head.generation, None), [])

    def _passages(
        self, conn: psycopg.Connection[Any], generation: int, ids: list[str] | None
    ) -> dict[str, list[PgPassage]]:
        if ids is None:
            rows = conn.execute(
                f"SELECT {_PASSAGE_COLS} FROM passages WHERE generation = %s ORDER BY article_id, ord",
                (generation,),
            )
        else:
            rows = conn.execute(
                f"SELECT {_PASSAGE_COLS} FROM passages WHERE generation = %s AND article_id = ANY(%s) "
                "ORDER BY article_id, ord",
                (generation, ids),
            )
        out: dict[str, list[PgPassage]] = {}
        for r in rows:
            out.setdefault(str(r[0]), []).append(_passage(r))
        return out

    # ---- writes ------------------------------------------------------------------------------
    def write(
        self, items: Sequence[tuple[Article, Sequence[NewPassage]]], generation: int, now: str
    ) -> tuple[int, dict[str, Literal["created", "updated", "unchanged"]]]:
        """Write articles with their passages of `generation` in one transaction: (log head, status by id).

        Raises GenerationChangedError when the cluster serves another generation than the one
        the passages were embedded for. Concurrent writes of one article are serialised by its row
        lock: the last commit wins whole, passages included.
        """
        with self._tx() as conn:
            row = conn.execute("SELECT generation FROM serving FOR SHARE").fetchone()
            if row is None or int(row[0]) != generation:
                raise GenerationChangedError
            ids = sorted(a.id for a, _ in items)
            hashes = {
                r[0]: r[1]
                for r in conn.execute(
                    "SELECT id, content_hash FROM articles WHERE id = ANY(%s) ORDER BY id FOR UPDATE", (ids,)
                )
            }
            status: dict[str, Literal["created", "updated", "unchanged"]] = {}
            for article, passages in sorted(items, key=lambda i: i[0].id):
                if hashes.get(article.id) == article.content_hash:
                    status[article.id] = "unchanged"
                    continue
                status[article.id] = "updated" if article.id in hashes else "created"
                self._put(conn, article, passages, generation, now)
            changed = [i for i in ids if status[i] != "unchanged"]
            seq = self._log(conn, [("upsert", i) for i in changed], generation)
            with conn.cursor() as cur:
                cur.executemany(
                    "UPDATE articles SET seq = %s WHERE id = %s",
                    [(seq - len(changed) + 1 + k, i) for k, i in enumerate(changed)],
                )
        return seq, status

    def _put(
        self,
        conn: psycopg.Connection[Any],
        a: Article,
        passages: Sequence[NewPassage],
        generation: int,
        now: str,
    ) -> None:
        conn.execute(
            f"INSERT INTO articles({_ARTICLE_COLS}, seq) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,0) "
            "ON CONFLICT (id) DO UPDATE SET title=excluded.title, text=excluded.text, url=excluded.url, "
            "source=excluded.source, published_at=excluded.published_at, language=excluded.language, "
            "metadata=excluded.metadata, content_hash=excluded.content_hash, updated_at=excluded.updated_at",
            (
                a.id,
                a.title,
                a.text,
                a.url,
                a.source,
                a.published_at,
                a.language,
                json.dumps(dict(a.metadata), ensure_ascii=False, sort_keys=True),
                a.content_hash,
                now,
                now,
            ),
        )
        self._put_passages(conn, a.id, passages, generation)

    def _put_passages(
        self, conn: psycopg.Connection[Any], article_id: str, passages: Sequence[NewPassage], generation: int
    ) -> None:
        conn.execute(
            "DELETE FROM passages WHERE generation = %s AND article_id = %s", (generation, article_id)
        )
        with conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO passages(generation, {_PASSAGE_COLS}) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                [
                    (
                        generation,
                        article_id,
                        p.ord,
                        p.char_start,
                        p.char_end,
                        p.n_tokens,
                        p.language,
                        _vector_bytes(p.vector),
                        p.sentences.to_bytes(),
                        len(p.sentences),
                    )
                    for p in passages
                ],
            )

    def _log(
        self, conn: psycopg.Connection[Any], entries: Sequence[tuple[str, str | None]], generation: int
    ) -> int:
        """Take the next log numbers (last statement before commit: commits happen in seq order)."""
        row = conn.execute("UPDATE log_head SET seq = seq + %s RETURNING seq", (len(entries),)).fetchone()
        assert row is not None
        head = int(row[0])
        if entries:
            first = head - len(entries) + 1
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO change_log(seq, kind, article_id, generation) VALUES (%s,%s,%s,%s)",
                    [(first + k, kind, art, generation) for k, (kind, art) in enumerate(entries)],
                )
            conn.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, str(head)))
        return head

    def delete(self, article_id: str) -> tuple[int, int] | None:
        """Delete an article and its passages: (log head, passages removed), or None when unknown."""
        with self._tx() as conn:
            row = conn.execute("SELECT generation FROM serving FOR SHARE").fetchone()
            assert row is not None
            n = conn.execute(
                "SELECT count(*) FROM passages WHERE article_id = %s AND generation = %s",
                (article_id, row[0]),
            ).fetchone()
            gone = conn.execute("DELETE FROM articles WHERE id = %s RETURNING id", (article_id,)).fetchone()
            if gone is None:
                return None
            seq = self._log(conn, [("delete", article_id)], int(row[0]))
        return seq, int(n[0]) if n else 0

    # ---- cluster-wide rebuilds ---------------------------------------------------------------
    def start_build(self, model_id: str, model_name: str | None, batch: int) -> tuple[int, int, int]:
        """Open a new generation in state 'building' with its batches: (generation, batches, start seq).

        The caller holds REINDEX_LOCK. An earlier unfinished build is abandoned and dropped.
        """
        with self._tx() as conn:
            conn.execute("UPDATE generations SET state = 'abandoned' WHERE state = 'building'")
            row = conn.execute(
                "SELECT max(generation) + 1, (SELECT seq FROM log_head) FROM generations"
            ).fetchone()
            assert row is not None
            gen, start = int(row[0]), int(row[1])
            conn.execute("DELETE FROM passages WHERE generation >= %s", (gen,))
            conn.execute("DELETE FROM batches WHERE generation >= %s", (gen,))
            conn.execute(
                "INSERT INTO generations(generation, model_id, model_name, state, start_seq) "
                "VALUES (%s, %s, %s, 'building', %s)",
                (gen, model_id, model_name, start),
            )
            ids = [r[0] for r in conn.execute("SELECT id FROM articles ORDER BY id")]
            chunks = [ids[i : i + batch] for i in range(0, len(ids), batch)]
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO batches(generation, no, article_ids) VALUES (%s, %s, %s)",
                    [(gen, k, c) for k, c in enumerate(chunks)],
                )
        return gen, len(chunks), start

    def claim(self, worker: str, lease_s: float) -> Claim | None:
        """Lease the next batch nobody holds (or whose lease ran out) of the generation being built."""
        with self._tx() as conn:
            row = conn.execute(
                "SELECT b.generation, b.no, b.article_ids, g.model_id, g.model_name "
                "FROM batches b JOIN generations g ON g.generation = b.generation "
                "WHERE g.state = 'building' AND NOT b.done AND (b.lease_until IS NULL OR b.lease_until < now()) "
                "ORDER BY b.no LIMIT 1 FOR UPDATE OF b SKIP LOCKED"
            ).fetchone()
            if row is None:
                return None
            conn.execute(
                "UPDATE batches SET worker = %s, lease_until = now() + make_interval(secs => %s) "
                "WHERE generation = %s AND no = %s",
                (worker, lease_s, row[0], row[1]),
            )
        return Claim(int(row[0]), int(row[1]), list(row[2]), str(row[3]), row[4])

    def renew(self, claim: Claim, worker: str, lease_s: float) -> bool:
        """Extend this worker's lease on a batch it is still embedding; False when it was taken over."""
        with self._tx() as conn:
            row = conn.execute(
                "UPDATE batches SET lease_until = now() + make_interval(secs => %s) "
                "WHERE generation = %s AND no = %s AND worker = %s AND NOT done RETURNING no",
                (lease_s, claim.generation, claim.no, worker),
            ).fetchone()
        return row is not None

    def finish(
        self, claim: Claim, worker: str, items: Sequence[tuple[Article, Sequence[NewPassage]]]
    ) -> bool:
        """Store a batch's passages if the lease is still this worker's; False when it was lost.

        Articles changed since they were read are skipped here: the switch re-embeds them.
        """
        with self._tx() as conn:
            row = conn.execute(
                "SELECT done, worker FROM batches WHERE generation = %s AND no = %s FOR UPDATE",
                (claim.generation, claim.no),
            ).fetchone()
            if row is None or row[0] or row[1] != worker:
                return False
            n = self._store_built(conn, claim.generation, items)
            conn.execute(
                "UPDATE batches SET done = true, passages = %s WHERE generation = %s AND no = %s",
                (n, claim.generation, claim.no),
            )
        return True

    def store_built(self, generation: int, items: Sequence[tuple[Article, Sequence[NewPassage]]]) -> int:
        """Store rebuilt passages of articles still as they were read; returns how many passages."""
        with self._tx() as conn:
            return self._store_built(conn, generation, items)

    def _store_built(
        self,
        conn: psycopg.Connection[Any],
        generation: int,
        items: Sequence[tuple[Article, Sequence[NewPassage]]],
    ) -> int:
        hashes = {
            r[0]: r[1]
            for r in conn.execute(
                "SELECT id, content_hash FROM articles WHERE id = ANY(%s) ORDER BY id FOR SHARE",
                (sorted(a.id for a, _ in items),),
            )
        }
        n = 0
        for article, passages in items:
            if hashes.get(article.id) == article.content_hash:
                self._put_passages(conn, article.id, passages, generation)
                n += len(passages)
        return n

    def build_progress(self, generation: int) -> tuple[int, int]:
        """(batches done, batches) of a generation."""
        with self._tx() as conn:
            row = conn.execute(
                "SELECT count(*) FILTER (WHERE done), count(*) FROM batches WHERE generation = %s",
                (generation,),
            ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    def building(self) -> bool:
        """True while a generation is being built."""
        with self._tx() as conn:
            return conn.execute("SELECT 1 FROM generations WHERE state = 'building'").fetchone() is not None

    def changed_since(self, seq: int) -> tuple[list[PgArticle], int]:
        """Articles written after log number `seq`, and the head they were read at."""
        with self._tx() as conn:
            rows = conn.execute(f"SELECT {_ARTICLE_COLS} FROM articles WHERE seq > %s", (seq,)).fetchall()
            head = conn.execute("SELECT seq FROM log_head").fetchone()
        assert head is not None
        return [_article(r) for r in rows], int(head[0])

    @contextmanager
    def switching(self, generation: int) -> Iterator[SwitchTx]:
        """The switch's transaction: writers are held off (`serving` locked) until it commits."""
        with self._tx() as conn:
            conn.execute("SELECT generation FROM serving FOR UPDATE")
            yield SwitchTx(self, conn, generation)

    def abandon(self, generation: int) -> None:
        """Drop a build that failed; the serving generation is untouched."""
        with self._tx() as conn:
            conn.execute("UPDATE generations SET state = 'abandoned' WHERE generation = %s", (generation,))
            conn.execute("DELETE FROM passages WHERE generation = %s", (generation,))
            conn.execute("DELETE FROM batches WHERE generation = %s", (generation,))

    def drop_retired(self) -> int:
        """Remove the passages of generations no longer serving (after a switch)."""
        with self._tx() as conn:
            cur = conn.execute(
                "DELETE FROM passages WHERE generation IN "
                "(SELECT generation FROM generations WHERE state IN ('retired', 'abandoned'))"
            )
            conn.execute(  # the serving generation's batches stay, as the record of who built what
                "DELETE FROM batches WHERE generation IN "
                "(SELECT generation FROM generations WHERE state IN ('retired', 'abandoned'))"
            )
            return cur.rowcount


class SwitchTx:
    """Inside the switch: re-embed the last changed articles, then serve the new generation."""

    def __init__(self, store: PgStore, conn: psycopg.Connection[Any], generation: int) -> None:
        self.store, self.conn, self.generation = store, conn, generation

    def changed_since(self, seq: int) -> list[PgArticle]:
        """Articles written after `seq` (no writer can add to them while the switch holds `serving`)."""
        rows = self.conn.execute(f"SELECT {_ARTICLE_COLS} FROM articles WHERE seq > %s", (seq,)).fetchall()
        return [_article(r) for r in rows]

    def put(self, article_id: str, passages: Sequence[NewPassage]) -> None:
        """Store an article's passages in the new generation."""
        self.store._put_passages(self.conn, article_id, passages, self.generation)

    def missing(self) -> list[str]:
        """Articles with no passage in the new generation (must be none before the switch)."""
        rows = self.conn.execute(
            "SELECT a.id FROM articles a WHERE NOT EXISTS "
            "(SELECT 1 FROM passages p WHERE p.article_id = a.id AND p.generation = %s)",
            (self.generation,),
        ).fetchall()
        return [r[0] for r in rows]

    def commit_switch(self) -> int:
        """Serve the new generation; its log entry makes every replica load it. Returns the log head."""
        c = self.conn
        c.execute("UPDATE generations SET state = 'retired' WHERE state = 'serving'")
        c.execute(
            "UPDATE generations SET state = 'serving', switched_at = now() WHERE generation = %s",
            (self.generation,),
        )
        c.execute("UPDATE serving SET generation = %s", (self.generation,))
        return self.store._log(c, [("generation", None)], self.generation)
