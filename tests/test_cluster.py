"""Several replicas on one PostgreSQL: convergence, catch-up, kill -9, outages, concurrent updates.

In-process services with the fake encoder test the replication logic; real `citesearch serve`
and `citesearch worker` processes (real model) test the cluster end to end. PostgreSQL is a
throwaway cluster started by the `pg` fixture (tests/pg.py).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import psycopg
import pytest
from fastapi.testclient import TestClient

from citesearch.api.app import create_app
from citesearch.api.jobs import Job
from citesearch.api.settings import Settings
from citesearch.index.articles import ArticleInput
from citesearch.index.cluster import ClusterConfig
from citesearch.index.errors import StoreUnavailableError
from citesearch.index.search import SearchQuery
from citesearch.index.service import IndexConfig, SearchService
from citesearch.index.store import Sentences
from tests.fakes import FakeEncoder
from tests.pg import PgCluster
from tests.test_server import ROOT, free_port, wait_for

DB_PASSWORD = "cluster-pw-7f3a9c"
Snapshot = dict[str, tuple[str, str, str, list[tuple[int, int, int, str, bytes, bytes | None]]]]


def report(i: int, version: str = "") -> ArticleInput:
    return ArticleInput(
        id=f"r-{i}",
        title=f"Report {i}",
        text=f"Report {i}{version}: the council met on day {i} and approved budget line {i}. "
        f"Members debated the proposal {version or 'at length'} before the vote.",
        language="en",
    )


def snapshot(db: Path) -> Snapshot:
    """Articles with their passages, vectors and sentences in the serving generation, from a store file."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        gen = int(conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])
        out: Snapshot = {}
        for aid, h, created, updated in conn.execute(
            "SELECT id, content_hash, created_at, updated_at FROM articles"
        ):
            out[aid] = (h, created, updated, [])
        for aid, ordinal, start, end, lang, vec, sents in conn.execute(
            "SELECT article_id, ord, char_start, char_end, language, vector, sentences FROM passages "
            "WHERE generation = ? ORDER BY article_id, ord",
            (gen,),
        ):
            out[aid][3].append(
                (ordinal, start, end, lang, bytes(vec), None if sents is None else bytes(sents))
            )
        return out
    finally:
        conn.close()


def service_snapshot(svc: SearchService) -> Snapshot:
    return snapshot(svc.data_dir / "store.sqlite")


def sentences_of(snap: Snapshot) -> list[Sentences]:
    """Every passage's sentences (a passage stored without them fails the test)."""
    out = []
    for _, _, _, passages in snap.values():
        for p in passages:
            assert p[5] is not None, "a passage without sentences"
            out.append(Sentences.from_bytes(p[5]))
    return out


class NoModel(FakeEncoder):
    """The fake encoder's identity with every passage call refused: catching up must not embed."""

    def encode_passages(self, texts: list[str]) -> npt.NDArray[np.float32]:
        raise AssertionError("a replica catching up called the model")

    def count_tokens_batch(self, texts: list[str]) -> list[int]:
        raise AssertionError("a replica catching up called the tokenizer")


@pytest.fixture
def url(pg: PgCluster) -> str:
    return pg.url()


def replica(url: str, data_dir: Path, encoder: FakeEncoder | None = None) -> SearchService:
    return SearchService(
        IndexConfig(data_dir=data_dir, checkpoint_every_s=0.5),
        encoder or FakeEncoder(),
        cluster=ClusterConfig(url=url, poll_s=0.1, timeout_s=2.0, lease_s=2.0),
    )


def caught_up(*services: SearchService) -> Callable[[], bool]:
    def check() -> bool:
        stats = [s.cluster_status() for s in services]
        return all(st is not None and st.lag_entries == 0 for st in stats) and (
            len({st.applied_seq for st in stats if st is not None}) == 1
        )

    return check


def writes(svc: SearchService, article: ArticleInput) -> bool:
    """True once a write goes through (the database may still be coming back)."""
    try:
        svc.upsert([article])
    except StoreUnavailableError:
        return False
    return True


# ---- in-process replicas (fake encoder) ---------------------------------------------------------
def test_writes_and_deletes_on_one_replica_reach_the_other(url: str, tmp_path: Path) -> None:
    a, b = replica(url, tmp_path / "a"), replica(url, tmp_path / "b")
    try:
        res = a.upsert([report(1), report(2)])
        assert [r.status for r in res] == ["created", "created"]
        assert a.stats().articles == 2  # read your own write: applied here before the answer
        wait_for(lambda: b.stats().articles == 2, what="B to apply A's write")
        hits = b.search(SearchQuery(text="budget line 2", top_k=1, mode="lexical")).hits
        assert hits and hits[0].passage.article_id == "r-2"
        assert b.upsert([report(1)])[0].status == "unchanged"
        assert b.delete("r-1") == 1
        assert b.stats().articles == 1
        wait_for(caught_up(a, b), what="both replicas at the log head")
        assert service_snapshot(a) == service_snapshot(b)  # the same sentence spans and vectors too
        assert sentences_of(service_snapshot(b))
        st = a.stats().cluster
        assert st is not None and st.writable and st.applied_seq == st.head_seq == 3
    finally:
        a.close()
        b.close()


def test_a_fresh_replica_catches_up_from_the_database_without_calling_the_model(
    url: str, tmp_path: Path
) -> None:
    a = replica(url, tmp_path / "a")
    try:
        a.upsert([report(i) for i in range(40)])
        a.upsert([report(3, " revised")])
        a.delete("r-7")
        fresh = replica(url, tmp_path / "fresh", NoModel())
        try:
            assert fresh.stats().articles == 39  # caught up before it serves
            assert service_snapshot(fresh) == service_snapshot(a)  # sentence spans and vectors too
            sents = sentences_of(service_snapshot(fresh))
            assert any(len(x) > 1 for x in sents) and all(len(x) >= 1 for x in sents)
            assert fresh.stats().sentences == a.stats().sentences == sum(len(x) for x in sents)
            q = SearchQuery(text="budget line 12", top_k=3, mode="lexical")
            assert [h.passage.article_id for h in fresh.search(q).hits] == [
                h.passage.article_id for h in a.search(q).hits
            ]
            a.upsert([report(100)])  # later writes keep flowing, still without the model
            wait_for(caught_up(a, fresh), what="the fresh replica to follow")
            assert service_snapshot(fresh) == service_snapshot(a)
        finally:
            fresh.close()
    finally:
        a.close()


def test_a_replica_behind_a_pruned_log_reloads_everything(url: str, tmp_path: Path) -> None:
    a, b = replica(url, tmp_path / "a"), replica(url, tmp_path / "b")
    try:
        a.upsert([report(i) for i in range(5)])
        wait_for(caught_up(a, b), what="B at the head")
        b.close()
        a.upsert([report(1, " revised"), report(9)])
        a.delete("r-2")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DELETE FROM change_log")  # everything B would need is gone
        b = replica(url, tmp_path / "b")
        assert service_snapshot(b) == service_snapshot(a)
        assert sorted(service_snapshot(b)) == ["r-0", "r-1", "r-3", "r-4", "r-9"]
    finally:
        a.close()
        b.close()


def test_rows_from_before_sentences_are_served_without_calling_the_model(url: str, tmp_path: Path) -> None:
    a = replica(url, tmp_path / "a")
    b = replica(url, tmp_path / "b")
    try:
        a.upsert([report(i) for i in range(3)])
        wait_for(caught_up(a, b), what="B at the head")
    finally:
        a.close()
        b.close()
    with psycopg.connect(url, autocommit=True) as conn:  # the cluster schema of before
        conn.execute("ALTER TABLE passages DROP COLUMN sentences, DROP COLUMN n_sentences")
    db = tmp_path / "b" / "store.sqlite"
    with sqlite3.connect(db) as local:  # B's local copy of before: no sentences either
        local.execute("UPDATE passages SET sentences = NULL, n_sentences = 0")
    local.close()
    b = replica(url, tmp_path / "b", NoModel())  # upgrades the schema; repair must not embed
    fresh = replica(url, tmp_path / "fresh", NoModel())
    try:
        for svc in (b, fresh):
            snap = service_snapshot(svc)
            assert sorted(snap) == ["r-0", "r-1", "r-2"]
            for _, _, _, passages in snap.values():  # each passage stands as its one sentence
                for _, start, end, _, vec, blob in passages:
                    assert blob is not None
                    sents = Sentences.from_bytes(blob)
                    assert sents.spans.tolist() == [[start, end]] and sents.vectors.tobytes() == vec
            hits = svc.search(SearchQuery(text="budget line 2", top_k=1)).hits
            assert hits and hits[0].passage.article_id == "r-2"
    finally:
        b.close()
        fresh.close()


def test_two_replicas_updating_one_article_at_once_converge_on_the_last_commit(
    url: str, tmp_path: Path
) -> None:
    enc = FakeEncoder()
    a, b = replica(url, tmp_path / "a", enc), replica(url, tmp_path / "b", enc)
    try:

        def burst(svc: SearchService, tag: str) -> None:
            for k in range(15):
                svc.upsert([report(0, f" {tag} v{k} " + " extra words" * (k % 4) * 60)])

        threads = [threading.Thread(target=burst, args=(s, t)) for s, t in ((a, "alpha"), (b, "beta"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wait_for(caught_up(a, b), what="both replicas at the log head")
        snap_a, snap_b = service_snapshot(a), service_snapshot(b)
        assert snap_a == snap_b
        # Never a mix: every passage's span and vector belong to the text that won.
        row, passages = a.get_article("r-0")
        assert [p.ord for p in passages] == list(range(len(passages)))
        vectors: dict[int, npt.NDArray[np.float32]] = {}
        for ids, vecs, _ in a.store.iter_vectors(a.state.generation, [p.id for p in passages]):
            vectors.update(zip(ids.tolist(), vecs, strict=True))
        for p in passages:
            assert np.allclose(vectors[p.id], enc.vector(row.text[p.char_start : p.char_end]), atol=1e-6)
    finally:
        a.close()
        b.close()


def test_database_outage_keeps_searches_refuses_writes_and_recovers(
    pg: PgCluster, url: str, tmp_path: Path
) -> None:
    a = replica(url, tmp_path / "a")
    try:
        a.upsert([report(1)])
        pg.stop()
        try:
            q = SearchQuery(text="budget line 1", top_k=1, mode="hybrid")
            assert a.search(q).hits[0].passage.article_id == "r-1"
            with pytest.raises(StoreUnavailableError):
                a.upsert([report(2)])
            status = a.cluster_status()
            assert status is not None and not status.writable
            assert a.search(q).hits[0].passage.article_id == "r-1"
        finally:
            pg.start()
        wait_for(lambda: writes(a, report(2)), what="a write to succeed")
        assert a.stats().articles == 2
        wait_for(lambda: (s := a.cluster_status()) is not None and s.writable, what="writable again")
    finally:
        a.close()


# ---- real processes (real model) ----------------------------------------------------------------
class Proc:
    """A `citesearch` process whose stderr is drained by a thread (so its pipe never fills)."""

    def __init__(self, args: list[str], env: dict[str, str], ready: tuple[str, ...]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "citesearch.api.cli", *args],
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
            cwd=ROOT,
        )
        self.lines: list[str] = []
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            if all(r in "".join(self.lines) for r in ready):
                break
        else:
            raise AssertionError("process exited early:\n" + "".join(self.lines))
        threading.Thread(target=self.lines.extend, args=(self.proc.stderr,), daemon=True).start()

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=60)


class Server(Proc):
    def __init__(self, url: str, data_dir: Path, **env: str) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        cluster_env = {
            "CITESEARCH_DATABASE_URL": url,
            "CITESEARCH_CLUSTER_POLL_S": "0.2",
            "CITESEARCH_CLUSTER_LEASE_S": "2",
            "CITESEARCH_CLUSTER_TIMEOUT_S": "2",
            "CITESEARCH_CLUSTER_BUILD_BATCH": "3",
            "CITESEARCH_CHECKPOINT_EVERY_S": "1",
            "CITESEARCH_LOG_LEVEL": "info",
            **env,
        }
        args = ["serve", "--data-dir", str(data_dir), "--port", str(self.port)]
        super().__init__(args, cluster_env, ("citesearch ready", "Uvicorn running"))
        self.http = httpx.Client(base_url=self.base, timeout=60)

    def stats(self) -> dict[str, Any]:
        r = self.http.get("/v1/stats")
        assert r.status_code == 200, r.text
        out: dict[str, Any] = r.json()
        return out

    def stop(self) -> None:
        self.http.close()
        super().stop()


def converged(*servers: Server) -> Callable[[], bool]:
    def check() -> bool:
        stats = [s.stats()["cluster"] for s in servers]
        return all(st["lag_entries"] == 0 for st in stats) and len({st["applied_seq"] for st in stats}) == 1

    return check


@pytest.fixture(scope="module")
def cluster(pg: PgCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Server, Server]]:
    """Replicas A and B of one database, each with its own data dir. The URL carries a password
    (the test cluster trusts loopback, so it is never checked): no log line or answer may show it."""
    url = pg.url("servers").replace("postgres@", f"postgres:{DB_PASSWORD}@")
    base = tmp_path_factory.mktemp("cluster")
    a = Server(url, base / "a")
    b = Server(url, base / "b")
    try:
        yield url, a, b
    finally:
        a.stop()
        b.stop()


def post(server: Server, articles: list[ArticleInput]) -> httpx.Response:
    body = {"articles": [a.model_dump(exclude_none=True) for a in articles]}
    return server.http.post("/v1/articles", json=body)


def test_write_on_a_is_read_on_b(cluster: tuple[str, Server, Server]) -> None:
    _, a, b = cluster
    r = post(a, [report(1), report(2)])
    assert r.status_code == 200, r.text
    wait_for(lambda: b.http.get("/v1/articles/r-2").status_code == 200, what="B to serve A's article")
    res = b.http.post("/v1/search", json={"query": "Which budget line did the council approve on day 2?"})
    assert res.json()["results"][0]["article_id"] == "r-2"
    assert a.http.get("/v1/articles/r-1").json() == b.http.get("/v1/articles/r-1").json()
    metrics = b.http.get("/metrics").text
    assert "citesearch_cluster_applied_seq" in metrics and "citesearch_cluster_writable 1.0" in metrics


def test_a_replica_killed_during_a_write_burst_resumes_and_converges(
    cluster: tuple[str, Server, Server],
) -> None:
    url, a, b = cluster
    stop = threading.Event()
    failures: list[str] = []

    def burst() -> None:
        i = 10
        while not stop.is_set() and i < 100:
            r = post(a, [report(i), report(i + 1), report(i - 5, f" update {i}")])
            if r.status_code != 200:
                failures.append(r.text)
            i += 2

    writer = threading.Thread(target=burst)
    writer.start()
    try:
        start = b.stats()["cluster"]["applied_seq"]
        wait_for(lambda: b.stats()["cluster"]["applied_seq"] > start + 6, what="B applying the burst")
        b.kill9()
        wait_for(lambda: a.stats()["cluster"]["applied_seq"] > start + 30, what="more writes while B is down")
        restarted = Server(url, b.data_dir)
    finally:
        stop.set()
        writer.join()
    try:
        assert not failures
        wait_for(converged(a, restarted), what="the restarted replica to catch up")
        assert a.stats()["articles"] == restarted.stats()["articles"]
        assert snapshot(a.data_dir / "store.sqlite") == snapshot(restarted.data_dir / "store.sqlite")
    finally:
        b.__dict__.update(restarted.__dict__)  # the module's B from now on


def test_database_stopped_during_searches(pg: PgCluster, cluster: tuple[str, Server, Server]) -> None:
    _, a, b = cluster
    stop = threading.Event()
    answers: list[int] = []

    def search() -> None:
        with httpx.Client(timeout=60) as http:
            while not stop.is_set():
                for s in (a, b):
                    r = http.post(
                        f"{s.base}/v1/search", json={"query": "budget line approved by the council"}
                    )
                    answers.append(r.status_code)

    searcher = threading.Thread(target=search)
    searcher.start()
    try:
        wait_for(lambda: len(answers) > 5, what="searches to flow")
        pg.stop()
        try:
            r = post(a, [report(500)])
            assert r.status_code == 503 and r.json()["error"]["code"] == "store_unavailable", r.text
            assert b.http.delete("/v1/articles/r-1").status_code == 503
            ready = a.http.get("/readyz")
            assert ready.status_code == 200 and ready.json()["status"] == "degraded"
            assert b.stats()["cluster"]["writable"] is False
            n = len(answers)
            wait_for(lambda: len(answers) > n + 5, what="searches during the outage")
        finally:
            pg.start()
        wait_for(lambda: post(a, [report(501)]).status_code == 200, what="writes to work again")
        assert a.http.get("/readyz").json()["status"] == "ready"
        wait_for(lambda: b.http.get("/v1/articles/r-501").status_code == 200, what="B to follow again")
    finally:
        stop.set()
        searcher.join()
    assert answers and set(answers) == {200}


def test_reindex_spread_over_workers_survives_a_killed_worker(
    cluster: tuple[str, Server, Server],
) -> None:
    url, a, b = cluster
    assert post(a, [report(i) for i in range(300, 315)]).status_code == 200
    wait_for(converged(a, b), what="both replicas at the head")
    env = {
        "CITESEARCH_DATABASE_URL": url,
        "CITESEARCH_CLUSTER_POLL_S": "0.2",
        "CITESEARCH_CLUSTER_LEASE_S": "2",
    }
    workers = [
        Proc(["worker"], {**env, "CITESEARCH_LOG_LEVEL": "info"}, ("waiting for batches",)) for _ in range(2)
    ]
    w1 = f"{os.uname().nodename}:{workers[0].proc.pid}"
    try:
        before = a.stats()
        job = a.http.post("/v1/reindex").json()["job_id"]
        with psycopg.connect(url) as conn:

            def w1_holds_a_batch() -> bool:
                row = conn.execute(
                    "SELECT count(*) FROM batches WHERE worker = %s AND NOT done", (w1,)
                ).fetchone()
                return bool(row and row[0])

            wait_for(w1_holds_a_batch, timeout=120, what="worker 1 to claim a batch")
            workers[0].kill9()
            held = conn.execute("SELECT no FROM batches WHERE worker = %s AND NOT done", (w1,)).fetchall()
            assert held, "worker 1 was killed holding a batch"
        wait_for(
            lambda: a.http.get(f"/v1/jobs/{job}").json()["status"] in ("succeeded", "failed"),
            timeout=180,
            what="the reindex job",
        )
        assert a.http.get(f"/v1/jobs/{job}").json()["status"] == "succeeded"
        gen = before["generation"] + 1
        with psycopg.connect(url) as conn:
            rows = conn.execute(
                "SELECT article_id, count(*), min(ord), max(ord) FROM passages WHERE generation = %s "
                "GROUP BY article_id",
                (gen,),
            ).fetchall()
            n_articles = conn.execute("SELECT count(*) FROM articles").fetchone()
            taken_over = conn.execute(
                "SELECT worker FROM batches WHERE generation = %s AND no = ANY(%s)",
                (gen, [h[0] for h in held]),
            ).fetchall()
            old = conn.execute("SELECT count(*) FROM passages WHERE generation < %s", (gen,)).fetchone()
            sentences = conn.execute(
                "SELECT count(*) FILTER (WHERE sentences IS NULL OR n_sentences = 0), sum(n_sentences) "
                "FROM passages WHERE generation = %s",
                (gen,),
            ).fetchone()
        assert n_articles is not None and len(rows) == n_articles[0]  # every article, once
        assert all(cnt == hi - lo + 1 and lo == 0 for _, cnt, lo, hi in rows)
        assert len(taken_over) == len(held) and all(w[0] != w1 for w in taken_over)  # redone by another
        assert old is not None and old[0] == 0
        assert sentences is not None and sentences[0] == 0  # the workers embedded every passage's sentences
        wait_for(lambda: a.stats()["generation"] == gen and b.stats()["generation"] == gen, what="the switch")
        wait_for(converged(a, b), what="both replicas on the new generation")
        assert a.stats()["passages"] == b.stats()["passages"] == sum(r[1] for r in rows)
        assert a.stats()["sentences"] == b.stats()["sentences"] == sentences[1]
        assert snapshot(a.data_dir / "store.sqlite") == snapshot(b.data_dir / "store.sqlite")
        res = b.http.post(
            "/v1/search", json={"query": "Which budget line did the council approve on day 310?"}
        )
        assert res.json()["results"][0]["article_id"] == "r-310"
    finally:
        for w in workers:
            w.stop()


def test_no_log_line_or_answer_shows_the_database_password(cluster: tuple[str, Server, Server]) -> None:
    # After the tests above: writes, a kill -9, a database outage (the driver's errors), a reindex.
    url, a, b = cluster
    assert DB_PASSWORD in url
    for server in (a, b):
        answers = [server.http.get(p).text for p in ("/v1/stats", "/readyz", "/metrics")]
        assert not [t for t in answers if DB_PASSWORD in t]
        assert "".join(server.lines) and not [line for line in server.lines if DB_PASSWORD in line]


def test_passages_left_by_a_coordinator_killed_after_its_switch_are_dropped(url: str, tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-u", str(ROOT / "tests" / "switch_child.py"), str(tmp_path / "killed"), url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().split() == ["switched", "2"]  # it waits before the drop
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()

    def stored() -> dict[int, int]:
        with psycopg.connect(url) as conn:
            rows = conn.execute("SELECT generation, count(*) FROM passages GROUP BY generation").fetchall()
        return {int(g): int(n) for g, n in rows}

    assert stored() == {1: 12, 2: 12}  # generation 1 retired, its passages still there
    b = replica(url, tmp_path / "b")  # any replica starting repairs it
    try:
        assert stored() == {2: 12}
        assert (b.stats().generation, b.stats().passages, b.stats().stale_passages) == (2, 12, 0)
    finally:
        b.close()
    again = replica(url, tmp_path / "killed")  # the killed one's own copy keeps one generation too
    try:
        st = again.stats()
        assert (st.generation, st.passages, st.stale_passages) == (2, 12, 0)
        assert again.store.generation_passages() == {2: 12}
        again.checkpoint()  # (the start-up catch-up may have switched it after repair's checkpoint)
        assert [p.name for p in (tmp_path / "killed" / "generations").iterdir()] == ["000002"]
    finally:
        again.close()


def cluster_app(url: str, data_dir: Path, load: Callable[[str | None], FakeEncoder]) -> TestClient:
    """A replica as the real app, in process (the fake model: the reindex logic is what is tested)."""
    settings = Settings(
        data_dir=data_dir,
        database_url=url,
        model="fake",
        cluster_poll_s=0.1,
        cluster_timeout_s=2,
        cluster_lease_s=2,
    )
    return TestClient(create_app(settings, embedder_factory=load))


def job_of(client: TestClient, response: Any) -> Job:
    """The job a 202 names, from the app's own runner."""
    job = client.app.state.citesearch.jobs.get(response.json()["job_id"])  # type: ignore[attr-defined]
    assert isinstance(job, Job)
    return job


def race_reindex(clients: dict[str, TestClient]) -> dict[str, Any]:
    """POST /v1/reindex on every replica at once."""
    barrier = threading.Barrier(len(clients))
    answers: dict[str, Any] = {}

    def ask(name: str) -> None:
        barrier.wait()
        answers[name] = clients[name].post("/v1/reindex", json={"model": "fake"})

    threads = [threading.Thread(target=ask, args=(name,)) for name in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def test_a_second_reindex_gets_409_on_any_replica_and_one_during_an_outage_503(
    pg: PgCluster, url: str, tmp_path: Path
) -> None:
    """Two replicas on one database; decided before the 202, not in the job."""
    serving = threading.Event()
    release = threading.Event()

    def load(name: str | None) -> FakeEncoder:
        if serving.is_set():  # a reindex loading its model: held until the others have been asked
            release.wait(timeout=120)
        return FakeEncoder()

    with cluster_app(url, tmp_path / "a", load) as a, cluster_app(url, tmp_path / "b", load) as b:
        body = {"articles": [report(i).model_dump(exclude_none=True) for i in range(6)]}
        assert a.post("/v1/articles", json=body).status_code == 200
        serving.set()
        answers = race_reindex({"a": a, "b": b})  # A and B at once: exactly one is accepted
        assert sorted(r.status_code for r in answers.values()) == [202, 409], [
            r.text for r in answers.values()
        ]
        winner = next(name for name, r in answers.items() if r.status_code == 202)
        first = job_of(a if winner == "a" else b, answers[winner])
        for client in (a, b):  # while it runs (its model still loading), every replica refuses another
            refused = client.post("/v1/reindex")
            assert refused.status_code == 409 and refused.json()["error"]["code"] == "conflict", refused.text
        release.set()
        assert first.done.wait(timeout=120) and first.status == "succeeded", first.error
        pg.stop()  # the database down: refused with 503 at once, and no job started
        try:
            down = b.post("/v1/reindex")
            assert down.status_code == 503 and down.json()["error"]["code"] == "store_unavailable", down.text
            assert b.app.state.citesearch.jobs.active() is None  # type: ignore[attr-defined]
        finally:
            pg.start()
        serving.clear()
        accepted: list[Any] = []

        def accepted_again() -> bool:  # once B reaches the database again
            r = b.post("/v1/reindex")
            if r.status_code == 202:
                accepted.append(r)
            return bool(accepted)

        wait_for(accepted_again, what="a reindex accepted once the database is back")
        second = job_of(b, accepted[0])
        assert second.done.wait(timeout=120) and second.status == "succeeded", second.error
        wait_for(lambda: a.get("/v1/stats").json()["generation"] == 3, what="A on the last generation")
