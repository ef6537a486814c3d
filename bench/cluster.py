"""Cluster benchmark (issue #11): replication lag, fresh-replica catch-up, searches/s with 1 and 2
replicas, reindex passages/s with 1 and 2 workers, all on one throwaway PostgreSQL.

Real `citesearch serve` processes (replicas A and B, the real model, the replicas' own build
workers off so that the worker counts are exact) and `citesearch worker` processes run on loopback.
Sections:

1. ingest: XQuAD articles posted to A (batches of 8): the embedding rate, for reference;
2. lag: a writer posts one new article at a time to A for --write-seconds; for each, the time from
   A's answer (applied on A) to B serving it, polled every 5 ms;
3. search: --clients closed-loop clients for --search-seconds against A alone, then round-robin over
   A and B;
4. reindex: `POST /v1/reindex` on A with the coordinator alone (1 worker), then with one
   `citesearch worker` process beside it (2 workers);
5. catch-up: the stored rows are copied in PostgreSQL (same vectors, new ids) up to
   --catch-up-passages, then a fresh replica in this process (the real model loaded first, not
   timed) is opened on an empty data dir: passages/s including its start-up, and the number of
   passages it embedded (must be 0);
6. overhead: the same writes in process with the fake encoder, standalone and as a replica.

Run: `.venv/bin/python -m bench.cluster [--articles 200] [--write-seconds 30] [--search-seconds 20]`.
Writes bench/results/cluster.{json,md}. Every figure is an absolute time: each section records the
load average (`/proc/loadavg`) next to it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.perf import RESULTS, ROOT, Http, free_port, machine
from bench.quality import Doc, load, safe_id
from tests.pg import PgCluster, pg_bin


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def pct(xs: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q)) if xs else float("nan")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Proc:
    """A citesearch subprocess logging to a file."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self.fh = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "citesearch.api.cli", *args],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
            stdout=self.fh,
            stderr=subprocess.STDOUT,
        )

    def wait_log(self, text: str, timeout: float = 300) -> None:
        end = time.monotonic() + timeout
        while text not in self.log_path.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"{self.log_path.name}: no {text!r}\n" + self.log_path.read_text()[-3000:])
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=120)
        self.fh.close()


class Replica(Proc):
    def __init__(self, name: str, env: dict[str, str], work: Path) -> None:
        self.port = free_port()
        super().__init__(
            ["serve", "--data-dir", str(work / name), "--port", str(self.port)], env, work / f"{name}.log"
        )
        end = time.monotonic() + 300
        while not self._ready():
            if self.proc.poll() is not None or time.monotonic() > end:
                self.stop()
                raise RuntimeError(f"{name} not ready:\n" + self.log_path.read_text()[-3000:])
            time.sleep(0.2)

    def _ready(self) -> bool:
        http = Http(self.port)
        try:
            return http.request("GET", "/readyz")[0] == 200
        except OSError:
            return False
        finally:
            http.close()


def article(doc: Doc) -> dict[str, Any]:
    return {"id": safe_id(doc.id), "title": doc.title, "text": doc.text, "language": doc.language}


def section_ingest(a: Replica, docs: Sequence[Doc]) -> dict[str, Any]:
    http = Http(a.port)
    t0, passages = time.perf_counter(), 0
    for i in range(0, len(docs), 8):
        out = http.json("POST", "/v1/articles", {"articles": [article(d) for d in docs[i : i + 8]]})
        passages += sum(r["passages"] for r in out["results"])
    took = time.perf_counter() - t0
    http.close()
    return {"articles": len(docs), "passages": passages, "seconds": took, "passages_per_s": passages / took}


def section_lag(a: Replica, b: Replica, seconds: float) -> dict[str, Any]:
    """Writes to A, one at a time, for `seconds`; per write, the delay until B serves it."""
    lags: list[float] = []
    lock = threading.Lock()
    pollers: list[threading.Thread] = []

    def poll(art_id: str, acked: float) -> None:
        http = Http(b.port)
        while http.request("GET", f"/v1/articles/{art_id}")[0] != 200:
            time.sleep(0.005)
        with lock:
            lags.append(time.perf_counter() - acked)
        http.close()

    http = Http(a.port)
    end, k = time.monotonic() + seconds, 0
    load0 = loadavg()
    t0 = time.perf_counter()
    while time.monotonic() < end:
        art = {
            "id": f"lag-{k}",
            "title": f"Bulletin {k}",
            "text": f"Bulletin {k}: the port authority reported {k} ships in the harbour today. "
            "Traffic was normal and no incident was recorded.",
            "language": "en",
        }
        http.json("POST", "/v1/articles", {"articles": [art]})
        t = threading.Thread(target=poll, args=(art["id"], time.perf_counter()))
        t.start()
        pollers.append(t)
        k += 1
    writes_s = k / (time.perf_counter() - t0)
    for t in pollers:
        t.join()
    http.close()
    return {
        "writes": k,
        "writes_per_s": writes_s,
        "lag_ms": {"p50": pct(lags, 50) * 1000, "p99": pct(lags, 99) * 1000, "max": max(lags) * 1000},
        "loadavg": [load0, loadavg()],
    }


def inflate(url: str, passages: int) -> int:
    """Copy the stored articles and passages (new ids, same vectors) until about `passages`: a corpus
    for the catch-up figure that costs no embedding. Returns the copies made of each article."""
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM passages WHERE generation = (SELECT generation FROM serving)"
        ).fetchone()
        have = int(row[0]) if row else 0
        copies = max(0, -(-passages // max(have, 1)) - 1)
        cols = "title, text, url, source, published_at, language, metadata, content_hash, created_at, updated_at, seq"
        conn.execute(
            f"INSERT INTO articles(id, {cols}) SELECT id || '~' || k, {cols} FROM articles, generate_series(1, %s) k",
            (copies,),
        )
        pcols = "ord, char_start, char_end, n_tokens, language, vector"
        conn.execute(
            f"INSERT INTO passages(generation, article_id, {pcols}) SELECT generation, article_id || '~' || k, "
            f"{pcols} FROM passages, generate_series(1, %s) k WHERE generation = (SELECT generation FROM serving)",
            (copies,),
        )
    return copies


def section_catch_up(url: str, work: Path, passages: int) -> dict[str, Any]:
    """A fresh replica in this process: how fast it loads the cluster's generation, without the model."""
    from citesearch.embeddings import load_embedder
    from citesearch.index.cluster import ClusterConfig
    from citesearch.index.service import IndexConfig, SearchService

    copies = inflate(url, passages)

    embedder = load_embedder()
    calls = {"passages": 0}
    inner = embedder.encode_passages

    def counting(texts: list[str]) -> npt.NDArray[np.float32]:
        calls["passages"] += len(texts)
        return inner(texts)

    embedder.encode_passages = counting  # type: ignore[method-assign]
    load0 = loadavg()
    t0 = time.perf_counter()
    svc = SearchService(
        IndexConfig(data_dir=work / "fresh"), embedder, cluster=ClusterConfig(url=url, build_worker=False)
    )
    took = time.perf_counter() - t0
    stats = svc.stats()
    svc.close()
    return {
        "articles": stats.articles,
        "passages": stats.passages,
        "copies_per_article": copies,
        "seconds": took,
        "passages_per_s": stats.passages / took,
        "passages_embedded": calls["passages"],
        "loadavg": [load0, loadavg()],
    }


def section_overhead(url: str, work: Path, n: int = 150) -> dict[str, Any]:
    """What the cluster adds to one write: the same writes in process with the fake encoder, standalone
    and as a replica (PostgreSQL commit, NOTIFY, local apply, read-your-writes wait)."""
    from citesearch.index.articles import ArticleInput
    from citesearch.index.cluster import ClusterConfig
    from citesearch.index.service import IndexConfig, SearchService
    from tests.fakes import FakeEncoder

    def per_write_ms(svc: SearchService, tag: str) -> float:
        t0 = time.perf_counter()
        for i in range(n):
            text = f"Report {i}: the council approved budget line {i}."
            svc.upsert([ArticleInput(id=f"{tag}{i}", text=text, language="en")])
        svc.close()
        return (time.perf_counter() - t0) / n * 1000

    load0 = loadavg()
    alone = per_write_ms(SearchService(IndexConfig(data_dir=work / "alone"), FakeEncoder()), "alone-")
    cluster = ClusterConfig(url=url, build_worker=False)
    replica = per_write_ms(
        SearchService(IndexConfig(data_dir=work / "replica"), FakeEncoder(), cluster=cluster), "replica-"
    )
    return {"writes": n, "standalone_ms": alone, "replica_ms": replica, "loadavg": [load0, loadavg()]}


def section_search(
    ports: Sequence[int], questions: Sequence[str], clients: int, seconds: float
) -> dict[str, Any]:
    """Closed loop: each client sends its next question to the next replica (round robin)."""
    done: list[float] = []
    errors = [0]
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def client(c: int) -> None:
        conns = [Http(p) for p in ports]
        rnd = random.Random(c)
        i = c
        while time.monotonic() < end:
            t = time.perf_counter()
            status, _ = conns[i % len(conns)].request("POST", "/v1/search", {"query": rnd.choice(questions)})
            with lock:
                if status == 200:
                    done.append(time.perf_counter() - t)
                else:
                    errors[0] += 1
            i += 1
        for h in conns:
            h.close()

    load0 = loadavg()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - t0
    cores = len(os.sched_getaffinity(0))
    return {
        "replicas": len(ports),
        "clients": clients,
        "searches": len(done),
        "errors": errors[0],
        "searches_per_s": len(done) / took,
        "searches_per_s_per_core": len(done) / took / cores,
        "latency_ms": {"p50": pct(done, 50) * 1000, "p99": pct(done, 99) * 1000},
        "loadavg": [load0, loadavg()],
    }


def section_reindex(a: Replica, workers: int) -> dict[str, Any]:
    http = Http(a.port)
    before = http.json("GET", "/v1/stats")
    load0 = loadavg()
    t0 = time.perf_counter()
    job = http.json("POST", "/v1/reindex", None, expect=202)["job_id"]
    while (j := http.json("GET", f"/v1/jobs/{job}"))["status"] not in ("succeeded", "failed"):
        time.sleep(0.2)
    took = time.perf_counter() - t0
    after = http.json("GET", "/v1/stats")
    http.close()
    if j["status"] != "succeeded":
        raise RuntimeError(f"reindex failed: {j}")
    return {
        "workers": workers,
        "generation": after["generation"],
        "passages": after["passages"],
        "seconds": took,
        "passages_per_s": after["passages"] / took,
        "passages_before": before["passages"],
        "loadavg": [load0, loadavg()],
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    bindir = pg_bin()
    if bindir is None:
        raise SystemExit("PostgreSQL binaries not found")
    docs_by_id, questions = load()
    langs = ("en", "de", "es", "zh", "ar", "ru")
    docs = [d for d in docs_by_id.values() if d.language in langs][: args.articles]
    asked = [q.text for q in questions if q.language in langs]
    result: dict[str, Any] = {"machine": machine(), "loadavg_start": loadavg(), "args": vars(args)}
    pg = PgCluster(bindir)
    work = Path(tempfile.mkdtemp(prefix="citesearch-cluster-bench-"))
    url = pg.url("bench")
    env = {
        "CITESEARCH_DATABASE_URL": url,
        "CITESEARCH_CLUSTER_BUILD_WORKER": "false",
        "CITESEARCH_LOG_LEVEL": "warning",
        "CITESEARCH_MAX_CONNECTIONS": "256",
    }
    procs: list[Proc] = []
    try:
        log("starting replicas A and B")
        a = Replica("a", env, work)
        procs.append(a)
        b = Replica("b", env, work)
        procs.append(b)
        log(f"ingesting {len(docs)} articles through A")
        result["ingest"] = section_ingest(a, docs)
        log(f"ingest: {result['ingest']}")
        result["lag"] = section_lag(a, b, args.write_seconds)
        log(f"lag: {result['lag']}")
        result["search"] = [
            section_search([a.port], asked, args.clients, args.search_seconds),
            section_search([a.port, b.port], asked, args.clients, args.search_seconds),
        ]
        log(f"search: {result['search']}")
        result["reindex"] = [section_reindex(a, 1)]
        log(f"reindex 1 worker: {result['reindex'][0]}")
        w = Proc(["worker"], {**env, "CITESEARCH_LOG_LEVEL": "info"}, work / "worker.log")
        procs.append(w)
        w.wait_log("waiting for batches")
        result["reindex"].append(section_reindex(a, 2))
        log(f"reindex 2 workers: {result['reindex'][1]}")
        # Last: it copies rows in PostgreSQL behind the replicas' backs (no log entries).
        result["catch_up"] = section_catch_up(url, work, args.catch_up_passages)
        log(f"catch-up: {result['catch_up']}")
        result["overhead"] = section_overhead(pg.url("overhead"), work)
        log(f"overhead: {result['overhead']}")
    finally:
        for p in reversed(procs):
            p.stop()
        pg.destroy()
        shutil.rmtree(work, ignore_errors=True)
    result["loadavg_end"] = loadavg()
    return result


def la(v: Sequence[float]) -> str:
    """A load average triple."""
    return " / ".join(f"{x:.2f}" for x in v)


def overhead_only() -> dict[str, Any]:
    """The per-write section alone, on a throwaway PostgreSQL of its own."""
    bindir = pg_bin()
    if bindir is None:
        raise SystemExit("PostgreSQL binaries not found")
    pg = PgCluster(bindir)
    work = Path(tempfile.mkdtemp(prefix="citesearch-cluster-bench-"))
    try:
        return section_overhead(pg.url("overhead"), work)
    finally:
        pg.destroy()
        shutil.rmtree(work, ignore_errors=True)


def render_md(r: dict[str, Any]) -> str:
    m = r["machine"]
    ing, lag, cu = r["ingest"], r["lag"], r["catch_up"]
    s1, s2 = r["search"]
    x1, x2 = r["reindex"]
    return "\n".join(
        [
            "# Cluster benchmark (`python -m bench.cluster`)",
            "",
            f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; {m['date']}. "
            f"Load average at start {la(r['loadavg_start'])}, at end {la(r['loadavg_end'])} "
            "(the machine was shared with other jobs).",
            f"Corpus: {ing['articles']} XQuAD articles, {ing['passages']} passages; PostgreSQL 15 on loopback.",
            "",
            "| figure | value | load average (before → after) |",
            "|---|---|---|",
            f"| ingest through one replica (embedding) | {ing['passages_per_s']:.1f} passages/s | |",
            f"| replication lag A → B, p50 / p99 / max ({lag['writes']} writes at {lag['writes_per_s']:.1f}/s) "
            f"| {lag['lag_ms']['p50']:.0f} / {lag['lag_ms']['p99']:.0f} / {lag['lag_ms']['max']:.0f} ms "
            f"| {la(lag['loadavg'][0])} → {la(lag['loadavg'][1])} |",
            f"| fresh replica catch-up, start-up included ({cu['passages']} passages, {cu['passages_embedded']} embedded) "
            f"| {cu['passages_per_s']:.0f} passages/s ({cu['seconds']:.1f} s) "
            f"| {la(cu['loadavg'][0])} → {la(cu['loadavg'][1])} |",
            f"| searches, 1 replica, {s1['clients']} clients | {s1['searches_per_s']:.1f}/s "
            f"({s1['searches_per_s_per_core']:.1f}/s per core; p50 {s1['latency_ms']['p50']:.0f} ms) "
            f"| {la(s1['loadavg'][0])} → {la(s1['loadavg'][1])} |",
            f"| searches, 2 replicas round-robin, {s2['clients']} clients | {s2['searches_per_s']:.1f}/s "
            f"({s2['searches_per_s_per_core']:.1f}/s per core; p50 {s2['latency_ms']['p50']:.0f} ms) "
            f"| {la(s2['loadavg'][0])} → {la(s2['loadavg'][1])} |",
            f"| reindex, 1 worker (the coordinating replica) | {x1['passages_per_s']:.1f} passages/s "
            f"({x1['seconds']:.1f} s) | {la(x1['loadavg'][0])} → {la(x1['loadavg'][1])} |",
            f"| reindex, 2 workers (+ one `citesearch worker`) | {x2['passages_per_s']:.1f} passages/s "
            f"({x2['seconds']:.1f} s) | {la(x2['loadavg'][0])} → {la(x2['loadavg'][1])} |",
            *(
                [
                    f"| cost of the cluster per write (in process, fake encoder, {ov['writes']} writes) "
                    f"| {ov['replica_ms']:.1f} ms as a replica vs {ov['standalone_ms']:.1f} ms standalone "
                    f"| {la(ov['loadavg'][0])} → {la(ov['loadavg'][1])} |"
                ]
                if (ov := r.get("overhead"))
                else []
            ),
            "",
            "All processes share the same 2 cores: a second replica or worker on this machine adds no CPU, "
            "so these rows measure the overhead of the cluster, not its scaling. Each replica or worker "
            "on its own machine brings its own cores: searches/s and reindex passages/s then add up "
            "per machine (PostgreSQL only serves the log and the batches, not the searches). On a machine "
            "shared with other jobs (load average well above the core count), two processes also get a "
            "larger share of the CPU than one: a gain here from a second replica or worker on the same "
            "cores is that share, not scaling. Embedding figures (ingest, reindex) are far below the "
            "~70 passages/s of a quiet 2-core machine (bench/perf) for the same reason; the lag and the "
            "catch-up involve no model call.",
            "",
        ]
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--articles", type=int, default=200)
    p.add_argument("--write-seconds", type=float, default=30.0)
    p.add_argument("--search-seconds", type=float, default=20.0)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument(
        "--catch-up-passages", type=int, default=30_000, help="Corpus size for the catch-up figure."
    )
    p.add_argument("--render", action="store_true", help="Redraw the markdown from the JSON.")
    p.add_argument("--overhead-only", action="store_true", help="Measure the per-write cost into the JSON.")
    args = p.parse_args(argv)
    # A SIGTERM (e.g. `timeout`) unwinds through run()'s finally: no replica or PostgreSQL left behind.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    out_json, out_md = RESULTS / "cluster.json", RESULTS / "cluster.md"
    if args.render or args.overhead_only:
        r: dict[str, Any] = json.loads(out_json.read_text())
        if args.overhead_only:
            r["overhead"] = overhead_only()
            out_json.write_text(json.dumps(r, indent=2) + "\n")
    else:
        r = run(args)
        out_json.write_text(json.dumps(r, indent=2) + "\n")
    out_md.write_text(render_md(r))
    print(out_md.read_text())
    return r


if __name__ == "__main__":
    main()
