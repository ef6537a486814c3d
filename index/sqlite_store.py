"""The embedded store of record (the `Store` protocol of `index/store.py`) in one SQLite file (WAL).

Articles, passages, their vectors, their lexical terms (FTS5, BM25) and the per-language vector
sums live here; one transaction covers all of a write, so a crash leaves all of it or none. The
FAISS index is a checkpointed cache of the `vector` column, repaired from this file at start-up.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from citesearch.index.articles import Article
from citesearch.index.dates import epoch_seconds
from citesearch.index.store import ArticleRow, Filters, NewPassage, PassageRow, Sentences, Vector

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS articles (
    id TEXT PRIMARY KEY,
    title TEXT,
    text TEXT NOT NULL,
    url TEXT,
    source TEXT,
    published_at TEXT,
    published_ts REAL,
    language TEXT,
    metadata TEXT NOT NULL DEFAULT '{}',
    content_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    seq INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS articles_seq ON articles(seq);
CREATE TABLE IF NOT EXISTS passages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    generation INTEGER NOT NULL,
    article_id TEXT NOT NULL REFERENCES articles(id) ON DELETE CASCADE,
    ord INTEGER NOT NULL,
    char_start INTEGER NOT NULL,
    char_end INTEGER NOT NULL,
    n_tokens INTEGER NOT NULL,
    language TEXT NOT NULL,
    vector BLOB NOT NULL,
    sentences BLOB,
    n_sentences INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS passages_gen_article ON passages(generation, article_id, ord);
CREATE TABLE IF NOT EXISTS lang_stats (
    generation INTEGER NOT NULL,
    language TEXT NOT NULL,
    n INTEGER NOT NULL,
    vsum BLOB NOT NULL,
    PRIMARY KEY (generation, language)
);
CREATE VIRTUAL TABLE IF NOT EXISTS passages_fts USING fts5(
    terms, tokenize = "unicode61 remove_diacritics 0 categories 'L* N* Co M*'"
);
CREATE VIRTUAL TABLE IF NOT EXISTS passages_vocab USING fts5vocab(passages_fts, 'row');
"""

_ARTICLE_COLS = (
    "id, title, text, url, source, published_at, language, metadata, content_hash, created_at, updated_at"
)
_PASSAGE_COLS = (
    "p.id, p.article_id, p.ord, p.char_start, p.char_end, p.n_tokens, p.language, "
    "substr(a.text, p.char_start + 1, p.char_end - p.char_start), a.title, a.url, a.source, a.published_at"
)


def _article(row: Sequence[Any]) -> ArticleRow:
    return ArticleRow(
        id=row[0],
        title=row[1],
        text=row[2],
        url=row[3],
        source=row[4],
        published_at=row[5],
        language=row[6],
        metadata=json.loads(row[7]),
        content_hash=row[8],
        created_at=row[9],
        updated_at=row[10],
    )


def _passage(row: Sequence[Any]) -> PassageRow:
    return PassageRow(*row)


def _blob(vec: Vector) -> bytes:
    return np.ascontiguousarray(vec, dtype=np.float32).tobytes()


class SqliteStore:
    """SQLite store of record; one writer connection (callers serialise writes), a reader per thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._df_lock = threading.Lock()
        self._df_cache: dict[str, int] = {}
        self._df_total = 0
        self._writer = self._connect()
        self._writer.executescript(_SCHEMA)
        self._add_sentence_columns()
        with self._writer:
            self._writer.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?), ('generation', '1'),"
                " ('seq', '0')",
                (str(SCHEMA_VERSION),),
            )

    def _add_sentence_columns(self) -> None:
        """Give a store written before sentence vectors existed their columns (start-up repair fills them)."""
        columns = {r[1] for r in self._writer.execute("PRAGMA table_info(passages)")}
        with self._writer:
            if "sentences" not in columns:
                self._writer.execute("ALTER TABLE passages ADD COLUMN sentences BLOB")
            if "n_sentences" not in columns:
                self._writer.execute("ALTER TABLE passages ADD COLUMN n_sentences INTEGER NOT NULL DEFAULT 0")
            self._writer.execute(
                "CREATE INDEX IF NOT EXISTS passages_without_sentences ON passages(generation, article_id) "
                "WHERE sentences IS NULL"
            )

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30.0)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    @property
    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            conn.execute("PRAGMA query_only=ON")
            self._local.conn = conn
        return conn

    def close(self) -> None:
        """Close the writer connection (reader connections close with their threads)."""
        self._writer.close()

    # ---- meta -------------------------------------------------------------------------------
    def _meta(self, conn: sqlite3.Connection, key: str) -> str | None:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def get_meta(self, key: str) -> str | None:
        """A value from the meta table."""
        return self._meta(self._reader, key)

    def set_meta(self, key: str, value: str) -> None:
        """Set a value in the meta table (its own transaction)."""
        with self._writer:
            self._writer.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    @property
    def generation(self) -> int:
        """The generation that serves searches."""
        return int(self._meta(self._reader, "generation") or 1)

    @property
    def seq(self) -> int:
        """Write sequence number: grows with every committed write."""
        return int(self._meta(self._reader, "seq") or 0)

    # ---- writes (caller holds the write lock) ------------------------------------------------
    def transaction(self) -> _Transaction:
        """A write transaction (BEGIN IMMEDIATE … COMMIT, or ROLLBACK on error)."""
        return _Transaction(self._writer)

    def content_hashes(self, ids: Iterable[str]) -> dict[str, str]:
        """The content hash of each known article among `ids`."""
        out: dict[str, str] = {}
        id_list = list(ids)
        for marks, chunk in _in_chunks(id_list):
            rows = self._reader.execute(
                f"SELECT id, content_hash FROM articles WHERE id IN ({marks})", chunk
            ).fetchall()
            out.update({r[0]: r[1] for r in rows})
        return out

    # ---- reads ------------------------------------------------------------------------------
    def get_article(self, article_id: str) -> ArticleRow | None:
        """One article, or None."""
        row = self._reader.execute(
            f"SELECT {_ARTICLE_COLS} FROM articles WHERE id = ?", (article_id,)
        ).fetchone()
        return None if row is None else _article(row)

    def list_articles(self, limit: int, after: str | None) -> list[ArticleRow]:
        """Articles in id order, starting after the id `after` (keyset pagination)."""
        rows = self._reader.execute(
            f"SELECT {_ARTICLE_COLS} FROM articles WHERE id > ? ORDER BY id LIMIT ?",
            (after or "", limit),
        ).fetchall()
        return [_article(r) for r in rows]

    def article_passages(self, article_id: str, generation: int) -> list[PassageRow]:
        """The passages of one article in one generation, in order."""
        rows = self._reader.execute(
            f"SELECT {_PASSAGE_COLS} FROM passages p JOIN articles a ON a.id = p.article_id "
            "WHERE p.article_id = ? AND p.generation = ? ORDER BY p.ord",
            (article_id, generation),
        ).fetchall()
        return [_passage(r) for r in rows]

    def passages(self, ids: Sequence[int]) -> dict[int, PassageRow]:
        """Passages by id, with their article fields."""
        rows = self._rows_by_passage_id(_PASSAGE_COLS, ids)
        return {r[0]: _passage(r) for r in rows}

    def passage_heads(self, ids: Sequence[int]) -> dict[int, tuple[str, str | None]]:
        """{passage id: (article id, published_at)}: what ranking needs, without reading any text."""
        rows = self._rows_by_passage_id("p.id, p.article_id, a.published_at", ids)
        return {int(r[0]): (str(r[1]), r[2]) for r in rows}

    def _rows_by_passage_id(self, columns: str, ids: Sequence[int]) -> list[Any]:
        """`columns` of passages joined with their articles, for the given passage ids."""
        out: list[Any] = []
        for marks, chunk in _in_chunks(ids):
            out.extend(
                self._reader.execute(
                    f"SELECT {columns} FROM passages p JOIN articles a ON a.id = p.article_id "
                    f"WHERE p.id IN ({marks})",
                    chunk,
                ).fetchall()
            )
        return out

    def counts(self, generation: int) -> tuple[int, int]:
        """(articles, passages in `generation`)."""
        conn = self._reader
        articles = conn.execute("SELECT count(*) FROM articles").fetchone()[0]
        passages = conn.execute(
            "SELECT count(*) FROM passages WHERE generation = ?", (generation,)
        ).fetchone()[0]
        return int(articles), int(passages)

    def generation_passages(self) -> dict[int, int]:
        """Passages stored per generation, from the per-language counts (no table scan)."""
        rows = self._reader.execute(
            "SELECT generation, sum(n) FROM lang_stats GROUP BY generation HAVING sum(n) > 0"
        ).fetchall()
        return {int(g): int(n) for g, n in rows}

    def sentence_count(self, generation: int) -> int:
        """Sentence vectors stored with the passages of `generation`."""
        row = self._reader.execute(
            "SELECT coalesce(sum(n_sentences), 0) FROM passages WHERE generation = ?", (generation,)
        ).fetchone()
        return int(row[0])

    def passage_sentences(self, ids: Sequence[int]) -> dict[int, Sentences]:
        """The sentences of passages by id (passages stored without any are absent)."""
        out: dict[int, Sentences] = {}
        for marks, chunk in _in_chunks(ids):
            rows = self._reader.execute(
                f"SELECT id, sentences FROM passages WHERE id IN ({marks}) AND sentences IS NOT NULL", chunk
            ).fetchall()
            out.update({int(r[0]): Sentences.from_bytes(r[1]) for r in rows})
        return out

    def passage_ids(self, generation: int) -> npt.NDArray[np.int64]:
        """Every passage id of a generation."""
        rows = self._reader.execute("SELECT id FROM passages WHERE generation = ?", (generation,)).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def iter_vectors(
        self, generation: int, ids: Sequence[int] | None = None, batch: int = 4096
    ) -> Iterator[tuple[npt.NDArray[np.int64], Vector, list[str]]]:
        """(ids, vectors, languages) in batches, for all passages of a generation or only `ids`."""
        conn = self._reader
        if ids is None:
            cur = conn.execute(
                "SELECT id, vector, language FROM passages WHERE generation = ? ORDER BY id", (generation,)
            )
            while rows := cur.fetchmany(batch):
                yield _unpack(rows)
            return
        for marks, chunk in _in_chunks(ids):
            rows = conn.execute(
                f"SELECT id, vector, language FROM passages WHERE id IN ({marks}) ORDER BY id", chunk
            ).fetchall()
            if rows:
                yield _unpack(rows)

    def lang_stats(self, generation: int) -> dict[str, tuple[int, npt.NDArray[np.float64]]]:
        """Per-language passage count and vector sum (float64) for a generation."""
        rows = self._reader.execute(
            "SELECT language, n, vsum FROM lang_stats WHERE generation = ? AND n > 0", (generation,)
        ).fetchall()
        return {r[0]: (int(r[1]), np.frombuffer(r[2], dtype=np.float64).copy()) for r in rows}

    def filtered_ids(self, generation: int, filters: Filters) -> npt.NDArray[np.int64]:
        """Ids of the passages of a generation that pass the filters."""
        where, params = _filter_sql(filters)
        rows = self._reader.execute(
            f"SELECT p.id FROM passages p JOIN articles a ON a.id = p.article_id "
            f"WHERE p.generation = ?{where}",
            (generation, *params),
        ).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def lexical(
        self, terms: Sequence[str], generation: int, filters: Filters, limit: int
    ) -> list[tuple[int, float, str]]:
        """BM25 (FTS5) top `limit`: (passage id, score where higher is better, passage language)."""
        if not terms:
            return []
        match = match_expression(terms)
        where, params = _filter_sql(filters)
        rows = self._reader.execute(
            "SELECT p.id, -bm25(passages_fts) AS s, p.language FROM passages_fts "
            "JOIN passages p ON p.id = passages_fts.rowid JOIN articles a ON a.id = p.article_id "
            f"WHERE passages_fts MATCH ? AND p.generation = ?{where} ORDER BY s DESC LIMIT ?",
            (match, generation, *params, limit),
        ).fetchall()
        return [(int(r[0]), float(r[1]), str(r[2])) for r in rows]

    def common_terms(
        self, terms: Sequence[str], share: float, min_passages: int, language: str | None = None
    ) -> set[str]:
        """The terms found in more than `share` of the passages in `language` (all passages when
        None); none while there are fewer than `min_passages` of them.

        Document frequencies come from a cache refreshed when the corpus has grown or shrunk by a
        tenth: they only decide which terms are too common to be worth BM25's time. A term's count
        is over every language; a word is rarely spelled the same in two, and when it is, it is
        common in the language BM25 searches only the more.
        """
        per_language = self._passage_counts()
        total = sum(per_language.values())
        scope = total if language is None else per_language.get(language, 0)
        if scope < max(min_passages, 1):
            return set()
        with self._df_lock:
            if abs(total - self._df_total) > self._df_total / 10 or len(self._df_cache) > 100_000:
                self._df_cache.clear()
                self._df_total = total
            dfs = {t: self._df_cache[t] for t in terms if t in self._df_cache}
        missing = [t for t in terms if t not in dfs]
        if missing:
            found: dict[str, int] = {}
            for marks, chunk in _in_chunks(missing):
                q = f"SELECT term, doc FROM passages_vocab WHERE term IN ({marks})"
                found.update(self._reader.execute(q, chunk).fetchall())
            fetched = {t: int(found.get(t, 0)) for t in missing}
            dfs.update(fetched)
            with self._df_lock:
                self._df_cache.update(fetched)
        return {t for t, df in dfs.items() if df > share * scope}

    def _passage_counts(self) -> dict[str, int]:
        """Passages of every generation per language, from the per-language counts (no table scan)."""
        rows = self._reader.execute("SELECT language, sum(n) FROM lang_stats GROUP BY language").fetchall()
        return {str(r[0]): int(r[1] or 0) for r in rows}

    def articles_changed_since(self, seq: int) -> list[str]:
        """Ids of the articles written after write sequence `seq`."""
        rows = self._reader.execute("SELECT id FROM articles WHERE seq > ?", (seq,)).fetchall()
        return [r[0] for r in rows]

    def article_ids(self) -> list[str]:
        """All article ids."""
        return [r[0] for r in self._reader.execute("SELECT id FROM articles ORDER BY id").fetchall()]

    def articles_without_passages(self, generation: int) -> list[str]:
        """Articles that have no passage in `generation` (to re-embed)."""
        rows = self._reader.execute(
            "SELECT a.id FROM articles a WHERE NOT EXISTS "
            "(SELECT 1 FROM passages p WHERE p.article_id = a.id AND p.generation = ?)",
            (generation,),
        ).fetchall()
        return [r[0] for r in rows]

    def articles_without_sentences(self, generation: int) -> list[str]:
        """Articles with a passage in `generation` stored without sentences (written before they existed)."""
        rows = self._reader.execute(
            "SELECT DISTINCT article_id FROM passages WHERE generation = ? AND sentences IS NULL ORDER BY 1",
            (generation,),
        ).fetchall()
        return [r[0] for r in rows]


class _Transaction:
    """BEGIN IMMEDIATE on enter; COMMIT on success, ROLLBACK on error. Write helpers live here."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.removed: list[int] = []

    def __enter__(self) -> _Transaction:
        self.conn.execute("BEGIN IMMEDIATE")
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        else:
            self.conn.execute("ROLLBACK")

    def next_seq(self) -> int:
        """Bump and return the write sequence."""
        seq = int(self.conn.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()[0]) + 1
        self.conn.execute("UPDATE meta SET value = ? WHERE key = 'seq'", (str(seq),))
        return seq

    def set_meta(self, key: str, value: str) -> None:
        """Set a meta value inside this transaction."""
        self.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def delete_meta(self, key: str) -> None:
        """Remove a meta value inside this transaction."""
        self.conn.execute("DELETE FROM meta WHERE key = ?", (key,))

    def upsert_article(self, article: Article, *, now: str, seq: int, created_at: str | None = None) -> None:
        """Insert or replace an article row (created_at survives an update unless given: a replica
        copies it from the cluster store)."""
        a = article
        self.conn.execute(
            "INSERT INTO articles(id, title, text, url, source, published_at, published_ts, language, "
            "metadata, content_hash, created_at, updated_at, seq) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT(id) DO UPDATE SET title=excluded.title, text=excluded.text, url=excluded.url, "
            "source=excluded.source, published_at=excluded.published_at, published_ts=excluded.published_ts, "
            "language=excluded.language, metadata=excluded.metadata, content_hash=excluded.content_hash, "
            "updated_at=excluded.updated_at, seq=excluded.seq"
            + (", created_at=excluded.created_at" if created_at is not None else ""),
            (
                a.id,
                a.title,
                a.text,
                a.url,
                a.source,
                a.published_at,
                epoch_seconds(a.published_at) if a.published_at else None,
                a.language,
                json.dumps(dict(a.metadata), ensure_ascii=False, sort_keys=True),
                a.content_hash,
                created_at or now,
                now,
                seq,
            ),
        )

    def delete_passages(self, article_id: str, generation: int | None) -> list[int]:
        """Drop an article's passages (one generation, or all); returns the removed ids."""
        if generation is None:
            rows = self.conn.execute(
                "SELECT id, generation, language, vector FROM passages WHERE article_id = ?", (article_id,)
            ).fetchall()
        else:
            rows = self.conn.execute(
                "SELECT id, generation, language, vector FROM passages WHERE article_id = ? AND generation = ?",
                (article_id, generation),
            ).fetchall()
        for pid, gen, lang, blob in rows:
            self._lang_add(gen, lang, -np.frombuffer(blob, dtype=np.float32).astype(np.float64), -1)
            self.conn.execute("DELETE FROM passages_fts WHERE rowid = ?", (pid,))
            self.conn.execute("DELETE FROM passages WHERE id = ?", (pid,))
        ids = [int(r[0]) for r in rows]
        self.removed.extend(ids)
        return ids

    def delete_article(self, article_id: str) -> list[int] | None:
        """Delete an article and all its passages; None when unknown."""
        if self.conn.execute("SELECT 1 FROM articles WHERE id = ?", (article_id,)).fetchone() is None:
            return None
        ids = self.delete_passages(article_id, None)
        self.conn.execute("DELETE FROM articles WHERE id = ?", (article_id,))
        return ids

    def insert_passages(self, article_id: str, generation: int, passages: Sequence[NewPassage]) -> list[int]:
        """Insert passages with vectors and lexical terms; returns their new ids in order."""
        ids: list[int] = []
        for p in passages:
            cur = self.conn.execute(
                "INSERT INTO passages(generation, article_id, ord, char_start, char_end, n_tokens, language, "
                "vector, sentences, n_sentences) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    generation,
                    article_id,
                    p.ord,
                    p.char_start,
                    p.char_end,
                    p.n_tokens,
                    p.language,
                    _blob(p.vector),
                    p.sentences.to_bytes(),
                    len(p.sentences),
                ),
            )
            pid = int(cur.lastrowid or 0)
            self.conn.execute("INSERT INTO passages_fts(rowid, terms) VALUES (?, ?)", (pid, p.terms))
            self._lang_add(generation, p.language, p.vector.astype(np.float64), 1)
            ids.append(pid)
        return ids

    def rewrite_terms(self, terms_text: Callable[[str, str], str], batch: int = 2000) -> int:
        """Recompute every passage's lexical terms from its article text (the term scheme changed)."""
        self.conn.execute("DELETE FROM passages_fts")
        last, total = -1, 0
        while True:
            rows = self.conn.execute(
                "SELECT p.id, p.language, substr(a.text, p.char_start + 1, p.char_end - p.char_start) "
                "FROM passages p JOIN articles a ON a.id = p.article_id WHERE p.id > ? ORDER BY p.id LIMIT ?",
                (last, batch),
            ).fetchall()
            if not rows:
                return total
            self.conn.executemany(
                "INSERT INTO passages_fts(rowid, terms) VALUES (?, ?)",
                [(int(pid), terms_text(text, lang)) for pid, lang, text in rows],
            )
            last, total = int(rows[-1][0]), total + len(rows)

    def drop_generation(self, generation: int) -> int:
        """Remove every passage of a generation (an abandoned or superseded build)."""
        ids = [r[0] for r in self.conn.execute("SELECT id FROM passages WHERE generation = ?", (generation,))]
        for marks, chunk in _in_chunks(ids):
            self.conn.execute(f"DELETE FROM passages_fts WHERE rowid IN ({marks})", chunk)
            self.conn.execute(f"DELETE FROM passages WHERE id IN ({marks})", chunk)
        self.conn.execute("DELETE FROM lang_stats WHERE generation = ?", (generation,))
        return len(ids)

    def drop_generations_except(self, keep: Collection[int]) -> int:
        """Remove the passages of every generation not in `keep` (left by a switch cut short)."""
        kept = sorted(set(keep))
        marks = ",".join("?" * len(kept)) or "NULL"
        found = self.conn.execute(
            f"SELECT DISTINCT generation FROM passages WHERE generation NOT IN ({marks}) "
            f"UNION SELECT generation FROM lang_stats WHERE generation NOT IN ({marks})",
            (*kept, *kept),
        ).fetchall()
        return sum(self.drop_generation(int(g)) for (g,) in found)

    def _lang_add(self, generation: int, language: str, vec: npt.NDArray[np.float64], n: int) -> None:
        row = self.conn.execute(
            "SELECT n, vsum FROM lang_stats WHERE generation = ? AND language = ?", (generation, language)
        ).fetchone()
        if row is None:
            total, vsum = n, vec
        else:
            total, vsum = int(row[0]) + n, np.frombuffer(row[1], dtype=np.float64) + vec
        self.conn.execute(
            "INSERT OR REPLACE INTO lang_stats(generation, language, n, vsum) VALUES (?,?,?,?)",
            (generation, language, total, vsum.astype(np.float64).tobytes()),
        )


def _unpack(rows: Sequence[Sequence[Any]]) -> tuple[npt.NDArray[np.int64], Vector, list[str]]:
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), -1).copy()
    return ids, vecs, [str(r[2]) for r in rows]


def _filter_sql(f: Filters) -> tuple[str, list[Any]]:
    parts: list[str] = []
    params: list[Any] = []
    for column, values in (("p.language", f.languages), ("a.source", f.sources), ("a.id", f.article_ids)):
        if values:
            parts.append(f"{column} IN ({','.join('?' * len(values))})")
            params.extend(values)
    if f.published_after is not None:
        parts.append("a.published_ts >= ?")
        params.append(f.published_after)
    if f.published_before is not None:
        parts.append("a.published_ts < ?")
        params.append(f.published_before)
    return ("".join(f" AND {p}" for p in parts), params)


def _quote(term: str) -> str:
    return '"' + term.replace('"', '""') + '"'


def match_expression(terms: Iterable[str]) -> str:
    """An FTS5 MATCH expression that ORs the given terms, each quoted."""
    return " OR ".join(_quote(t) for t in terms)


IN_CHUNK = 500
"""Most values bound in one `IN (...)` list (SQLite limits bound parameters per statement)."""


def _in_chunks(items: Sequence[Any]) -> Iterator[tuple[str, list[Any]]]:
    """(placeholders, values) for each run of at most IN_CHUNK items, for `... IN ({placeholders})`."""
    for i in range(0, len(items), IN_CHUNK):
        chunk = list(items[i : i + IN_CHUNK])
        yield ",".join("?" * len(chunk)), chunk
