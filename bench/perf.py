"""Performance of citesearch against its floor (the bare encoder), at scale, at ingest, and against txtai.

Run: `.venv/bin/python -m bench.perf [--quick] [--sections ingest,peer,service,scale,probes]`.
Writes bench/results/perf.json (perf-quick.json with --quick) and bench/results/perf.md.

The machine is shared, so every figure is read as a RATIO against a reference measured in the
same run, interleaved with it where possible (question by question at concurrency 1):

- service: `POST /v1/search` through a real `citesearch serve` (uvicorn, loopback) against the bare
  `Embedder.encode_queries` of the same single questions in this process (the floor);
- ingest: `POST /v1/articles` against bare `Embedder.encode_passages` of the same passages;
- scale: FAISS search time and memory per passage, exact (`flat`) against approximate (`hnsw`);
- peer: txtai on the same model directory and passages (`bench/txtai_peer.py`).

Synthetic data, named as such in the results:
- service corpora beyond the real one (10k, 100k passages): the real XQuAD articles replicated under
  new ids; their passage vectors are the real ones plus Gaussian noise (σ=0.3 per unit vector,
  renormalised: cosine ≈ 0.96 to the original), written through the real ingest path
  (`SearchService.upsert`: validation, splitting, lexical terms, SQLite, FAISS) by an embedder wrapper
  whose `encode_passages` returns them and whose `model_id` is the real one, so the server (real
  model) accepts the data directory;
- scale (up to 1M vectors): vectors sampled from a Gaussian fitted to the real passage embeddings
  (per-language means, pooled covariance), queried with real question embeddings, centred and offset
  per language exactly as the service does.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime as dt
import gc
import http.client
import itertools
import json
import math
import os
import platform
import random
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from bench.quality import Doc
    from bench.txtai_peer import TxtaiPeer
    from citesearch.embeddings import Embedder
    from citesearch.index.articles import ArticleInput

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
F32 = npt.NDArray[np.float32]
SIGMA = 0.3
"""Noise added to each real unit vector for the synthetic copies (per-coordinate σ/√dim)."""
FLAT_TARGET_MS = 10.0


@dataclass(frozen=True)
class Plan:
    """Sizes of one run (the default fits `make bench`; --quick is a smoke run)."""

    name: str
    real_passages: int
    corpora: tuple[int, ...]
    questions: int
    conc_seconds: float
    concurrency: tuple[int, ...]
    flat_sizes: tuple[int, ...]
    hnsw_sizes: tuple[int, ...]
    hnsw_data: tuple[str, ...]
    scale_queries: int
    peer_queries: int
    breakdown_queries: int
    ingest_batch: int = 8


DEFAULT = Plan(
    name="default",
    real_passages=1000,
    corpora=(1000, 10_000, 100_000),
    questions=200,
    conc_seconds=6.0,
    concurrency=(4, 16),
    flat_sizes=(10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000),
    hnsw_sizes=(100_000,),
    hnsw_data=("gaussian", "replica"),
    scale_queries=200,
    peer_queries=150,
    breakdown_queries=60,
)
QUICK = Plan(
    name="quick",
    real_passages=150,
    corpora=(150, 2000),
    questions=40,
    conc_seconds=2.0,
    concurrency=(4, 16),
    flat_sizes=(10_000, 50_000, 100_000),
    hnsw_sizes=(10_000,),
    hnsw_data=("gaussian", "replica"),
    scale_queries=50,
    peer_queries=30,
    breakdown_queries=20,
)


# ---- small helpers ------------------------------------------------------------------------------
def log(msg: str) -> None:
    """Progress on stderr."""
    print(f"[perf {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def rss_bytes(pid: int | str = "self") -> int:
    """Resident set size of a process (Linux /proc); for this process, after returning freed heap to the OS."""
    if pid == "self":
        gc.collect()
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    """n, mean, p50, p95, p99 and min of latencies given in seconds, in milliseconds."""
    if not seconds:
        return {"n": 0}
    a = np.asarray(seconds, dtype=np.float64) * 1000
    return {
        "n": len(a),
        "mean": round(float(a.mean()), 3),
        "p50": round(float(np.percentile(a, 50)), 3),
        "p95": round(float(np.percentile(a, 95)), 3),
        "p99": round(float(np.percentile(a, 99)), 3),
        "min": round(float(a.min()), 3),
    }


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b rounded, None when either is missing or b is 0."""
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


def cpu_snapshot() -> tuple[float, float, float]:
    """(wall clock, busy CPU seconds of the whole machine, CPU seconds of this process and reaped children)."""
    vals = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:8]]
    busy = (sum(vals) - vals[3] - vals[4]) / os.sysconf("SC_CLK_TCK")
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    ours = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
    return time.perf_counter(), busy, ours


def foreign_load(start: tuple[float, float, float]) -> dict[str, float]:
    """CPU cores busy with other people's work since `start` (the shared machine's noise), and ours."""
    end = cpu_snapshot()
    wall = max(end[0] - start[0], 1e-9)
    ours = (end[2] - start[2]) / wall
    return {
        "foreign_cores": round(max((end[1] - start[1]) / wall - ours, 0.0), 2),
        "our_cores": round(ours, 2),
    }


def wait_idle(max_wait_s: float, threshold_cores: float = 0.3) -> float:
    """Wait (at most `max_wait_s`) until other processes use under `threshold_cores` for 10 s; returns the wait."""
    t0 = time.perf_counter()
    quiet = 0
    while time.perf_counter() - t0 < max_wait_s:
        snap = cpu_snapshot()
        time.sleep(5)
        busy = foreign_load(snap)["foreign_cores"]
        quiet = quiet + 1 if busy < threshold_cores else 0
        if quiet >= 2:
            break
        if quiet == 0:
            log(f"waiting for an idle machine: other processes use {busy} cores")
    return time.perf_counter() - t0


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def machine() -> dict[str, Any]:
    """CPU model, cores, memory, date and library versions."""
    from importlib.metadata import PackageNotFoundError, version

    model = platform.processor()
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    versions: dict[str, str | None] = {}
    for pkg in ("citesearch", "torch", "faiss-cpu", "numpy", "sentence-transformers", "uvicorn", "txtai"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = None
    mem = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem = int(line.split()[1]) * 1024
    return {
        "cpu": model,
        "cores": len(os.sched_getaffinity(0)),
        "memory_gib": round(mem / 2**30, 1),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "versions": versions,
    }


# ---- embedder wrappers --------------------------------------------------------------------------
class _Delegate:
    """Looks like the real Embedder (same model_id, dim, limits); subclasses change what they need."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.dim = inner.dim
        self.model_id = inner.model_id
        self.max_tokens = inner.max_tokens

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def count_tokens(self, text: str) -> int:
        return self.count_tokens_batch([text])[0]

    def count_tokens_batch(self, texts: list[str]) -> list[int]:
        return self.inner.count_tokens_batch(texts)

    def encode_queries(self, texts: list[str]) -> F32:
        return self.inner.encode_queries(texts)

    def encode_passages(self, texts: list[str]) -> F32:
        return self.inner.encode_passages(texts)

    def as_embedder(self) -> Embedder:
        """Typed view for SearchService (duck-typed: it only calls the methods above)."""
        return cast("Embedder", self)


class RecordingEmbedder(_Delegate):
    """The real embedder, recording each `encode_passages` batch and the time it took."""

    def __init__(self, inner: Embedder) -> None:
        super().__init__(inner)
        self.batches: list[list[str]] = []
        self.encode_s = 0.0

    def encode_passages(self, texts: list[str]) -> F32:
        t0 = time.perf_counter()
        out = self.inner.encode_passages(texts)
        self.encode_s += time.perf_counter() - t0
        self.batches.append(list(texts))
        return out


class ReplayEmbedder(_Delegate):
    """Returns known passage vectors (plus renormalised noise) instead of running the model.

    Token counts are cached by text, so replicated articles split as fast as the splitter allows.
    Unknown passages (none expected: same splitter, same texts) fall back to the real model.
    """

    def __init__(self, inner: Embedder, table: dict[str, F32], sigma: float, seed: int) -> None:
        super().__init__(inner)
        self.table = table
        self.sigma = sigma
        self.rng = np.random.default_rng(seed)
        self._tokens: dict[str, int] = {}
        self.fallbacks = 0

    def count_tokens_batch(self, texts: list[str]) -> list[int]:
        todo = [t for t in dict.fromkeys(texts) if t not in self._tokens]
        if todo:
            self._tokens.update(zip(todo, self.inner.count_tokens_batch(todo), strict=True))
        return [self._tokens[t] for t in texts]

    def encode_passages(self, texts: list[str]) -> F32:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        missing = [t for t in dict.fromkeys(texts) if t not in self.table]
        if missing:
            self.fallbacks += len(missing)
            self.table.update(zip(missing, self.inner.encode_passages(missing), strict=True))
        base = np.vstack([self.table[t] for t in texts]).astype(np.float32)
        if self.sigma <= 0:
            return base
        noise = self.rng.standard_normal(base.shape, dtype=np.float32) * (self.sigma / math.sqrt(self.dim))
        out = base + noise
        out /= np.linalg.norm(out, axis=1, keepdims=True)
        return out.astype(np.float32)


# ---- the server ---------------------------------------------------------------------------------
class Http:
    """One keep-alive HTTP/1.1 connection to the loopback server (stdlib: little client CPU)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: object | None = None) -> tuple[int, bytes]:
        payload = None if body is None else json.dumps(body, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=900)
            try:
                self.conn.request(method, path, body=payload, headers=headers)
                resp = self.conn.getresponse()
                return resp.status, resp.read()
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def json(self, method: str, path: str, body: object | None = None, expect: int = 200) -> Any:
        status, data = self.request(method, path, body)
        if status != expect:
            raise RuntimeError(f"{method} {path} -> {status}: {data[:500]!r}")
        return json.loads(data) if data else None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def query_shapes(port: int) -> list[list[int]]:
    """The server's question copies ([tokens, threads]), compiled before it was ready."""
    client = Http(port)
    try:
        shapes = list(client.json("GET", "/v1/stats").get("query_shapes") or [])
    finally:
        client.close()
    log(f"question copies [tokens, threads]: {shapes}")
    return shapes


@dataclass
class Server:
    """A running `citesearch serve` subprocess."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    ready_s: float

    def rss(self) -> int:
        return rss_bytes(self.proc.pid)


def _serve_command() -> list[str]:
    script = Path(sys.executable).with_name("citesearch")
    return [str(script)] if script.exists() else [sys.executable, "-m", "citesearch.api.cli"]


def _log_tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


@contextlib.contextmanager
def serve(data_dir: Path, log_path: Path) -> Iterator[Server]:
    """Start `citesearch serve` on a free loopback port; yield once /readyz is 200; always stop it."""
    port = free_port()
    cmd = [
        *_serve_command(),
        "serve",
        "--data-dir",
        str(data_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with log_path.open("wb") as fh:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)
        try:
            ready_s = _wait_ready(proc, port, t0, log_path)
            yield Server(proc, port, log_path, ready_s)
        finally:
            _stop(proc)


def _wait_ready(proc: subprocess.Popen[bytes], port: int, t0: float, log_path: Path) -> float:
    deadline = t0 + 600
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{_log_tail(log_path)}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", "/readyz")
            resp = conn.getresponse()
            body = resp.read()
            if resp.status == 200:
                return time.perf_counter() - t0
            if b"failed to start" in body:
                break
        except (OSError, http.client.HTTPException):
            pass
        finally:
            conn.close()
        time.sleep(0.05)
    raise RuntimeError(f"server not ready after {time.perf_counter() - t0:.0f}s:\n{_log_tail(log_path)}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)


# ---- load generators ----------------------------------------------------------------------------
def closed_loop(
    make: Callable[[], Callable[[str], object]], texts: Sequence[str], concurrency: int, seconds: float
) -> dict[str, Any]:
    """`concurrency` threads, each calling its own `make()` function back to back for `seconds`."""
    counter = itertools.count()
    lats: list[list[float]] = [[] for _ in range(concurrency)]
    errors: list[str] = []
    start = threading.Barrier(concurrency + 1)
    stop_at = [0.0]

    def worker(i: int) -> None:
        fn = make()
        start.wait()
        while time.perf_counter() < stop_at[0]:
            q = texts[next(counter) % len(texts)]
            t = time.perf_counter()
            try:
                fn(q)
            except Exception as exc:  # a failed request is reported, not retried
                errors.append(f"{type(exc).__name__}: {exc}")
                return
            lats[i].append(time.perf_counter() - t)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
    for th in threads:
        th.start()
    stop_at[0] = time.perf_counter() + seconds
    t0 = time.perf_counter()
    start.wait()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - t0
    flat = [x for lat in lats for x in lat]
    return {
        "concurrency": concurrency,
        "seconds": round(elapsed, 3),
        "requests": len(flat),
        "qps": round(len(flat) / elapsed, 3),
        "latency_ms": summary_ms(flat),
        "errors": errors[:5],
    }


def http_search_fn(port: int) -> Callable[[], Callable[[str], object]]:
    """Factory of per-thread `POST /v1/search` callers (default request: hybrid, top_k 5)."""

    def make() -> Callable[[str], object]:
        client = Http(port)

        def call(q: str) -> object:
            status, data = client.request("POST", "/v1/search", {"query": q})
            if status != 200:
                raise RuntimeError(f"search -> {status}: {data[:200]!r}")
            return data

        return call

    return make


def floor_fn(embedder: Embedder) -> Callable[[], Callable[[str], object]]:
    """Factory of in-process bare `encode_queries` callers on one question."""

    def make() -> Callable[[str], object]:
        return lambda q: embedder.encode_queries([q])

    return make


# ---- context shared by the sections -------------------------------------------------------------
@dataclass
class Ctx:
    """What one run holds: the plan, the model, the data, scratch space and results so far."""

    plan: Plan
    tmp: Path
    embedder: Embedder
    docs: list[Doc]
    questions: list[tuple[str, str]]
    results: dict[str, Any] = field(default_factory=dict)
    articles: list[ArticleInput] = field(default_factory=list)
    batches: list[list[str]] = field(default_factory=list)
    table: dict[str, F32] = field(default_factory=dict)
    real_dir: Path | None = None
    real_passages: int = 0
    query_vectors: F32 | None = None
    peer: TxtaiPeer | None = None

    def all_passages(self) -> list[str]:
        return [t for b in self.batches for t in b]


def stored_passages(data_dir: Path) -> list[str]:
    """The text of every passage in a data directory's store, in id order."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(data_dir / "store.sqlite")) as conn:
        rows = conn.execute(
            "SELECT substr(a.text, p.char_start + 1, p.char_end - p.char_start) "
            "FROM passages p JOIN articles a ON a.id = p.article_id ORDER BY p.id"
        ).fetchall()
    return [str(r[0]) for r in rows]


def article_input(doc: Doc) -> ArticleInput:
    """An XQuAD article as the service takes it (ids mapped to the allowed characters)."""
    from citesearch.index.articles import ArticleInput

    art_id = re.sub(r"[^A-Za-z0-9._~:@-]", "_", doc.id)
    return ArticleInput.model_validate(
        {"id": art_id, "title": doc.title, "text": doc.text, "language": doc.language}
    )


def article_json(a: ArticleInput) -> dict[str, Any]:
    """The request body form of an article."""
    return a.model_dump(mode="json", exclude_none=True)


def warm_up(embedder: Embedder) -> None:
    """First calls are slow (allocations, kernels): run a few before any timing."""
    for _ in range(3):
        embedder.encode_queries(["warm-up question about the weather?"])
        embedder.encode_passages(["A warm-up passage. " * 20, "Short one."])


def encode_question_floor(embedder: Embedder, texts: Sequence[str]) -> tuple[list[float], F32]:
    """Bare `encode_queries` on single questions: latencies (s) and the vectors."""
    lats: list[float] = []
    vecs: list[F32] = []
    for q in texts:
        t = time.perf_counter()
        v = embedder.encode_queries([q])
        lats.append(time.perf_counter() - t)
        vecs.append(v[0])
    return lats, np.vstack(vecs).astype(np.float32)


# ---- 3. ingest (and the real 1k corpus it leaves behind) ----------------------------------------
def section_ingest(ctx: Ctx) -> None:
    """Real model: in-process ingest, txtai indexing, bare encode, HTTP ingest, HTTP reindex."""
    from citesearch.index.service import IndexConfig, SearchService

    plan = ctx.plan
    order = list(ctx.docs)
    random.Random(0).shuffle(order)
    emb = ctx.embedder
    warm_up(emb)

    # In-process: SearchService.upsert, batches of `ingest_batch` articles, until the target size.
    rec = RecordingEmbedder(emb)
    real_dir = ctx.tmp / "corpus-real"
    svc = SearchService(IndexConfig(data_dir=real_dir, checkpoint_every_s=3600), rec.as_embedder())
    chosen: list[ArticleInput] = []
    per_article: dict[str, int] = {}
    upsert_s = 0.0
    n_passages = 0
    try:
        for i in range(0, len(order), plan.ingest_batch):
            batch = [article_input(d) for d in order[i : i + plan.ingest_batch]]
            t = time.perf_counter()
            written = svc.upsert(batch)
            upsert_s += time.perf_counter() - t
            chosen.extend(batch)
            for r in written:
                per_article[r.id] = r.passages
            n_passages = sum(per_article.values())
            if n_passages >= plan.real_passages:
                break
    finally:
        svc.close()
    ctx.articles, ctx.batches, ctx.real_dir, ctx.real_passages = chosen, rec.batches, real_dir, n_passages
    texts = ctx.all_passages()
    log(f"in-process ingest: {len(chosen)} articles, {n_passages} passages in {upsert_s:.1f}s")
    inproc = {
        "articles": len(chosen),
        "passages": n_passages,
        "seconds": round(upsert_s, 3),
        "passages_per_s": round(n_passages / upsert_s, 2),
        "encode_share": round(rec.encode_s / upsert_s, 3),
    }

    # txtai indexes the same passage texts right after, under the same conditions.
    peer_index: dict[str, Any] = {}
    try:
        from bench.txtai_peer import TxtaiPeer, txtai_version

        if txtai_version() is None:
            raise ImportError("txtai is not installed (pip install -e '.[bench]')")
        model_dir = Path(emb.source) if Path(emb.source).is_dir() else None
        if model_dir is None:
            raise RuntimeError(f"the embedder was not loaded from a local directory ({emb.source})")
        peer = TxtaiPeer(model_dir)
        peer.embeddings.batchtransform(["warm-up passage"] * 3, category="data")
        # The passages our index holds, not everything our service embedded (its sentence vectors
        # are extra work txtai does not do; the bare-encode baseline below covers all of it).
        peer_texts = stored_passages(real_dir)
        secs = peer.index(list(enumerate(peer_texts)))
        ctx.peer = peer
        peer_index = {
            "load_s": round(peer.load_s, 3),
            "seconds": round(secs, 3),
            "passages": len(peer_texts),
            "passages_per_s": round(len(peer_texts) / secs, 2),
            "info": peer.info(),
        }
        log(f"txtai index: {len(peer_texts)} passages in {secs:.1f}s")
    except Exception as exc:  # the peer is optional: report why it is missing
        peer_index = {"error": f"{type(exc).__name__}: {exc}"}
        log(f"txtai skipped: {peer_index['error']}")

    # Bare encode of exactly the passage batches the service embedded.
    t_bare = 0.0
    for b in ctx.batches:
        t = time.perf_counter()
        vecs = emb.encode_passages(b)
        t_bare += time.perf_counter() - t
        ctx.table.update(zip(b, vecs, strict=True))
    log(f"bare encode: {len(texts)} passages in {t_bare:.1f}s")

    # HTTP: the same article batches through POST /v1/articles on a real server, then a reindex.
    http_dir = ctx.tmp / "corpus-http"
    with serve(http_dir, ctx.tmp / "server-ingest.log") as srv:
        client = Http(srv.port)
        client.json("POST", "/v1/articles", {"articles": [{"id": "warm-up", "text": "Warm-up text. " * 30}]})
        client.json("DELETE", "/v1/articles/warm-up", expect=204)
        post_s = 0.0
        http_passages = 0
        mismatched = 0
        for i in range(0, len(chosen), plan.ingest_batch):
            batch = chosen[i : i + plan.ingest_batch]
            body = {"articles": [article_json(a) for a in batch]}
            t = time.perf_counter()
            out = client.json("POST", "/v1/articles", body)
            post_s += time.perf_counter() - t
            for r in out["results"]:
                http_passages += int(r["passages"])
                mismatched += int(r["passages"] != per_article.get(r["id"]))
        t = time.perf_counter()
        job = client.json("POST", "/v1/reindex", expect=202)
        status: dict[str, Any] = {}
        while True:
            status = client.json("GET", f"/v1/jobs/{job['job_id']}")
            if status["status"] in ("succeeded", "failed"):
                break
            time.sleep(0.1)
        reindex_s = time.perf_counter() - t
        client.close()
    log(
        f"HTTP ingest: {http_passages} passages in {post_s:.1f}s; reindex {reindex_s:.1f}s ({status['status']})"
    )
    bare_pps = len(texts) / t_bare
    http_pps = http_passages / post_s
    ctx.results["ingest"] = {
        "corpus": "real XQuAD articles (real model, no synthetic data)",
        "batch_articles": plan.ingest_batch,
        "bare_encode": {
            "passages": len(texts),
            "seconds": round(t_bare, 3),
            "passages_per_s": round(bare_pps, 2),
        },
        "http_post_articles": {
            "passages": http_passages,
            "seconds": round(post_s, 3),
            "passages_per_s": round(http_pps, 2),
            "ratio_to_bare": ratio(http_pps, bare_pps),
            "passage_count_mismatches": mismatched,
        },
        "in_process_upsert": {**inproc, "ratio_to_bare": ratio(inproc["passages_per_s"], bare_pps)},
        "http_reindex": {
            "status": status.get("status"),
            "error": status.get("error"),
            "articles": len(chosen),
            "passages": http_passages,
            "seconds": round(reindex_s, 3),
            "passages_per_s": round(http_passages / reindex_s, 2),
            "ratio_to_bare": ratio(http_passages / reindex_s, bare_pps),
        },
    }
    ctx.results["peer"] = {"index": {"ours_in_process": inproc, "txtai": peer_index}}


# ---- 4. peer: query latency ---------------------------------------------------------------------
def section_peer(ctx: Ctx) -> None:
    """Single questions, interleaved: ours (hybrid and dense, in process) and txtai, same model and data."""
    from bench.txtai_peer import cosine_agreement
    from citesearch.index.search import SearchQuery
    from citesearch.index.service import IndexConfig, SearchService

    peer = ctx.peer
    out = ctx.results.setdefault("peer", {})
    if peer is None or ctx.real_dir is None:
        out["query"] = {"error": "txtai index missing (see peer.index.txtai.error)"}
        return
    qs = [q for q, _ in ctx.questions[: ctx.plan.peer_queries]]
    svc = SearchService(IndexConfig(data_dir=ctx.real_dir, checkpoint_every_s=3600), ctx.embedder)
    try:
        for q in qs[:5]:
            svc.search(SearchQuery(text=q))
            peer.search(q, 5)
        lat: dict[str, list[float]] = {"ours_hybrid": [], "ours_dense": [], "txtai": []}
        for q in qs:
            t = time.perf_counter()
            svc.search(SearchQuery(text=q, top_k=5, mode="hybrid"))
            lat["ours_hybrid"].append(time.perf_counter() - t)
            t = time.perf_counter()
            svc.search(SearchQuery(text=q, top_k=5, mode="dense"))
            lat["ours_dense"].append(time.perf_counter() - t)
            t = time.perf_counter()
            peer.search(q, 5)
            lat["txtai"].append(time.perf_counter() - t)
    finally:
        svc.close()
    texts = ctx.all_passages()[:32]
    agree_p = cosine_agreement(peer.passage_vectors(texts), ctx.embedder.encode_passages(texts))
    agree_q = cosine_agreement(peer.query_vectors(qs[:32]), ctx.embedder.encode_queries(qs[:32]))
    s = {k: summary_ms(v) for k, v in lat.items()}
    out["query"] = {
        "passages": len(ctx.all_passages()),
        "questions": len(qs),
        "latency_ms": s,
        "ratio_ours_hybrid_to_txtai_p50": ratio(s["ours_hybrid"]["p50"], s["txtai"]["p50"]),
        "ratio_ours_dense_to_txtai_p50": ratio(s["ours_dense"]["p50"], s["txtai"]["p50"]),
        "ratio_ours_hybrid_to_txtai_p95": ratio(s["ours_hybrid"]["p95"], s["txtai"]["p95"]),
        "vector_agreement_cosine": {"passages": agree_p, "queries": agree_q},
    }
    log(f"peer queries: ours hybrid p50 {s['ours_hybrid']['p50']} ms, txtai p50 {s['txtai']['p50']} ms")
    peer.close()
    ctx.peer = None


# ---- 1. floor against the service --------------------------------------------------------------
def build_corpora(ctx: Ctx) -> list[dict[str, Any]]:
    """The real corpus, then synthetic ones grown from it by replication through the real ingest path."""
    from citesearch.index.service import IndexConfig, SearchService

    assert ctx.real_dir is not None
    corpora: list[dict[str, Any]] = [
        {"name": "real", "dir": ctx.real_dir, "passages": ctx.real_passages, "synthetic": False}
    ]
    per_copy = ctx.real_passages
    prev_dir, copies_done = ctx.real_dir, 1
    for target in ctx.plan.corpora[1:]:
        copies = max(copies_done + 1, math.ceil(target / per_copy))
        dst = ctx.tmp / f"corpus-{target}"
        shutil.copytree(prev_dir, dst)
        replay = ReplayEmbedder(ctx.embedder, dict(ctx.table), SIGMA, seed=copies)
        svc = SearchService(IndexConfig(data_dir=dst, checkpoint_every_s=3600), replay.as_embedder())
        t = time.perf_counter()
        try:
            for c in range(copies_done, copies):
                batch = [a.model_copy(update={"id": f"{a.id}-c{c:03d}"}) for a in ctx.articles]
                for i in range(0, len(batch), 64):
                    svc.upsert(batch[i : i + 64])
            passages = svc.stats().passages
        finally:
            svc.close()
        secs = time.perf_counter() - t
        added = passages - corpora[-1]["passages"]
        corpora.append(
            {
                "name": f"synthetic-{target // 1000}k",
                "dir": dst,
                "passages": passages,
                "synthetic": True,
                "build_s": round(secs, 1),
                "build_passages_per_s_without_model": round(added / secs, 1),
                "fallback_encodes": replay.fallbacks,
            }
        )
        log(f"built {dst.name}: {passages} passages ({added} added in {secs:.0f}s)")
        prev_dir, copies_done = dst, copies
    return corpora


def breakdown(ctx: Ctx, data_dir: Path, qvecs: F32) -> dict[str, Any]:
    """In-process search path without the model: where the time goes past the encoder."""
    import faiss

    from citesearch.index.language import detect_query_language
    from citesearch.index.search import Mode, SearchQuery
    from citesearch.index.service import IndexConfig, SearchService

    modes: tuple[Mode, ...] = ("hybrid", "dense", "lexical")
    n = ctx.plan.breakdown_queries
    qs = [q for q, _ in ctx.questions[:n]]
    svc = SearchService(IndexConfig(data_dir=data_dir, checkpoint_every_s=3600), ctx.embedder)
    out: dict[str, Any] = {}
    try:
        for q, v in zip(qs[:5], qvecs[:5], strict=True):
            svc.search(SearchQuery(text=q), query_vector=v)
        lat: dict[str, list[float]] = {k: [] for k in ("hybrid", "dense", "lexical", "language")}
        for q, v in zip(qs, qvecs[:n], strict=True):
            for mode in modes:
                t = time.perf_counter()
                svc.search(SearchQuery(text=q, mode=mode), query_vector=v)
                lat[mode].append(time.perf_counter() - t)
            t = time.perf_counter()
            detect_query_language(q, svc.state.means.languages or None)
            lat["language"].append(time.perf_counter() - t)
        vectors = svc.state.vectors
        prev = faiss.omp_get_max_threads()
        for label, threads in (("faiss_default_threads", prev), ("faiss_1_thread", 1)):
            faiss.omp_set_num_threads(threads)
            try:
                ts = []
                for v in qvecs[:n]:
                    t = time.perf_counter()
                    vectors.search(v, 100)
                    ts.append(time.perf_counter() - t)
                lat[label] = ts
            finally:
                faiss.omp_set_num_threads(prev)
        out = {k: summary_ms(v) for k, v in lat.items()}
        out["index_kind"] = vectors.kind
    finally:
        svc.close()
    return out


def section_service(ctx: Ctx) -> None:
    """Floor (bare encode_queries, in process) against POST /v1/search on a real server, per corpus."""
    plan = ctx.plan
    emb = ctx.embedder
    qs = [q for q, _ in ctx.questions]
    corpora = build_corpora(ctx)
    emb.prepare_questions()  # the floor on its question copies too, as the server
    per: list[dict[str, Any]] = []
    for corpus in corpora:
        name, data_dir = corpus["name"], corpus["dir"]
        log(f"service: {name} ({corpus['passages']} passages)")
        entry: dict[str, Any] = {k: v for k, v in corpus.items() if k != "dir"}
        with serve(data_dir, ctx.tmp / f"server-{name}.log") as srv:
            entry["startup_to_ready_s"] = round(srv.ready_s, 3)
            client = Http(srv.port)
            for q in qs:  # warm
                client.json("POST", "/v1/search", {"query": q})
            entry["query_shapes"] = query_shapes(srv.port)
            entry["server_rss_mib"] = round(srv.rss() / 2**20, 1)
            # Concurrency 1, interleaved question by question with the floor.
            floor_s: list[float] = []
            e2e_s: list[float] = []
            took: list[float] = []
            vecs: list[F32] = []
            for q in qs:
                t = time.perf_counter()
                v = emb.encode_queries([q])
                floor_s.append(time.perf_counter() - t)
                vecs.append(v[0])
                t = time.perf_counter()
                status, data = client.request("POST", "/v1/search", {"query": q})
                e2e_s.append(time.perf_counter() - t)
                if status != 200:
                    raise RuntimeError(f"search -> {status}: {data[:300]!r}")
                took.append(float(json.loads(data)["took_ms"]) / 1000)
            client.close()
            qvecs = np.vstack(vecs).astype(np.float32)
            if ctx.query_vectors is None:
                ctx.query_vectors = qvecs
            fl, se = summary_ms(floor_s), summary_ms(e2e_s)
            entry["c1"] = {
                "floor_ms": fl,
                "search_ms": se,
                "server_took_ms": summary_ms(took),
                "ratio_p50": ratio(se["p50"], fl["p50"]),
                "ratio_p95": ratio(se["p95"], fl["p95"]),
                "ratio_p99": ratio(se["p99"], fl["p99"]),
                "floor_qps_sequential": round(len(floor_s) / sum(floor_s), 3),
            }
            # Throughput: floor at the same concurrency before and after the server's run.
            conc: dict[str, Any] = {}
            floor = floor_fn(emb)
            for c in plan.concurrency:
                before = closed_loop(floor, qs, c, plan.conc_seconds)
                server = closed_loop(http_search_fn(srv.port), qs, c, plan.conc_seconds)
                after = closed_loop(floor, qs, c, plan.conc_seconds)
                floor_qps = (before["qps"] + after["qps"]) / 2
                best_floor = max(floor_qps, entry["c1"]["floor_qps_sequential"])
                conc[str(c)] = {
                    "server": server,
                    "floor_before": before,
                    "floor_after": after,
                    "floor_qps": round(floor_qps, 3),
                    "ratio_to_floor_qps": ratio(server["qps"], floor_qps),
                    "ratio_to_best_floor_qps": ratio(server["qps"], best_floor),
                }
                log(f"  c={c}: server {server['qps']:.1f} q/s, floor {floor_qps:.1f} q/s")
            entry["concurrency"] = conc
            entry["server_rss_after_mib"] = round(srv.rss() / 2**20, 1)
        log(f"  c=1 p50 search {se['p50']} ms vs floor {fl['p50']} ms; ready in {srv.ready_s:.1f}s")
        entry["in_process_breakdown_ms"] = breakdown(ctx, data_dir, qvecs)
        per.append(entry)
    service: dict[str, Any] = {"corpora": per}
    if len(per) >= 2:
        a, b = per[0], per[-1]
        dn = b["passages"] - a["passages"]
        if dn > 0:
            service["server_rss_bytes_per_passage"] = round(
                (b["server_rss_after_mib"] - a["server_rss_after_mib"]) * 2**20 / dn, 1
            )
    ctx.results["service"] = service


# ---- 2. scale: exact against approximate, in worker processes -----------------------------------
def fit_gaussian(vectors: F32, languages: Sequence[str]) -> dict[str, Any]:
    """Per-language means and the pooled within-language covariance's Cholesky factor."""
    langs = sorted(set(languages))
    li = np.array([langs.index(x) for x in languages])
    x = vectors.astype(np.float64)
    means = np.vstack([x[li == i].mean(axis=0) for i in range(len(langs))])
    resid = x - means[li]
    cov = resid.T @ resid / max(len(x) - len(langs), 1)
    chol = np.linalg.cholesky(cov + 1e-6 * np.eye(cov.shape[0]))
    weights = np.bincount(li, minlength=len(langs)) / len(li)
    return {"langs": langs, "means": means, "chol": chol, "weights": weights, "real": vectors, "real_li": li}


class Generator:
    """Samples unit vectors and their languages, deterministically by seed.

    `gaussian`: from the fitted per-language means and pooled covariance (no topical clusters: a
    hard case for a graph index). `replica`: a random real passage vector plus noise σ=SIGMA,
    renormalised (the service corpora's model: tight clusters around real passages).
    """

    def __init__(self, fit: dict[str, Any], seed: int, data: str = "gaussian") -> None:
        if data not in ("gaussian", "replica"):
            raise ValueError(f"unknown data model {data!r}")
        self.data = data
        self.langs: list[str] = list(fit["langs"])
        self.means = np.asarray(fit["means"], dtype=np.float32)
        self.chol = np.asarray(fit["chol"], dtype=np.float32)
        self.weights = np.asarray(fit["weights"], dtype=np.float64)
        self.real = np.asarray(fit["real"], dtype=np.float32)
        self.real_li = np.asarray(fit["real_li"], dtype=np.int64)
        self.rng = np.random.default_rng(seed)
        self.dim = self.means.shape[1]

    def sample(self, n: int) -> tuple[F32, npt.NDArray[np.int64]]:
        z = self.rng.standard_normal((n, self.dim), dtype=np.float32)
        if self.data == "replica":
            pick = self.rng.integers(0, len(self.real), size=n)
            li = self.real_li[pick]
            x = self.real[pick] + z * (SIGMA / math.sqrt(self.dim))
        else:
            li = self.rng.choice(len(self.langs), size=n, p=self.weights).astype(np.int64)
            x = z @ self.chol.T + self.means[li]
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x.astype(np.float32), li


def _prepared_queries(
    qvecs: F32,
    qlangs: Sequence[str],
    stats: dict[str, tuple[int, npt.NDArray[np.float64]]],
    slots: dict[str, int],
) -> list[tuple[F32, F32]]:
    """Centred queries and per-slot offsets, as `index.search._dense` builds them."""
    from citesearch.index.fairness import LanguageMeans

    means = LanguageMeans.from_stats(stats)
    out = []
    for v, lang in zip(qvecs, qlangs, strict=True):
        q = means.centre_query(v, lang)
        out.append((q, means.offsets(q, slots)))
    return out


def _time_searches(search: Callable[[F32, F32], object], queries: Sequence[tuple[F32, F32]]) -> list[float]:
    search(*queries[0])
    ts = []
    for q, off in queries:
        t = time.perf_counter()
        search(q, off)
        ts.append(time.perf_counter() - t)
    return ts


def scale_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Runs in its own process (clean RSS): the flat time/memory curve, or one HNSW build."""
    import faiss

    from citesearch.index.vectors import Manifest, VectorIndex

    npz = np.load(spec["fit"], allow_pickle=False)
    fit = {k: npz[k] for k in ("means", "chol", "weights", "real", "real_li")}
    fit["langs"] = [str(x) for x in npz["langs"]]
    qvecs = npz["qvecs"].astype(np.float32)
    qlangs = [str(x) for x in npz["qlangs"]]
    gen = Generator(fit, seed=int(spec["seed"]), data=spec.get("data", "gaussian"))
    dim = gen.dim
    nq = int(spec["queries"])
    stats: dict[str, tuple[int, npt.NDArray[np.float64]]] = {}

    def account(x: F32, li: npt.NDArray[np.int64]) -> None:
        for i, lang in enumerate(gen.langs):
            m = li == i
            n0, s0 = stats.get(lang, (0, np.zeros(dim)))
            stats[lang] = (n0 + int(m.sum()), s0 + x[m].sum(axis=0, dtype=np.float64))

    if spec["kind"] == "flat":
        vi = VectorIndex(dim, kind="flat")
        base = rss_bytes()
        added = 0
        curve = []
        default_threads = faiss.omp_get_max_threads()
        for size in spec["sizes"]:
            while added < size:
                step = min(20_000, size - added)
                x, li = gen.sample(step)
                vi.add(np.arange(added + 1, added + step + 1, dtype=np.int64), x, [gen.langs[i] for i in li])
                account(x, li)
                added += step
                del x
            mem = rss_bytes() - base
            queries = _prepared_queries(qvecs, qlangs, stats, vi.lang_slots)[
                : nq if size <= 100_000 else min(nq, 40)
            ]
            point: dict[str, Any] = {
                "n": size,
                "rss_delta_bytes": mem,
                "bytes_per_passage": round(mem / size, 1),
            }
            for label, threads in (("default_threads", default_threads), ("1_thread", 1)):
                faiss.omp_set_num_threads(threads)
                try:
                    ts = _time_searches(lambda q, off: vi.search(q, 100, lang_offsets=off), queries)
                finally:
                    faiss.omp_set_num_threads(default_threads)
                point[f"search_ms_{label}"] = summary_ms(ts)
            curve.append(point)
            print(f"flat {size}: {point['search_ms_default_threads']['p50']} ms", file=sys.stderr, flush=True)
        # Deletes on the largest flat index: remove every top-10 id and check none comes back.
        queries = _prepared_queries(qvecs, qlangs, stats, vi.lang_slots)[: min(nq, 40)]
        top = {int(i) for q, off in queries for i in vi.search(q, 10, lang_offsets=off)[1]}
        t = time.perf_counter()
        vi.remove(np.fromiter(top, dtype=np.int64))
        remove_s = time.perf_counter() - t
        leaked = sum(
            len(top & {int(i) for i in vi.search(q, 100, lang_offsets=off)[1]}) for q, off in queries
        )
        return {
            "kind": "flat",
            "threads_default": default_threads,
            "curve": curve,
            "deletes": {"deleted": len(top), "remove_s": round(remove_s, 3), "leaked": leaked},
        }

    # HNSW at one size: build, memory, latency and recall@10 at several ef_search, deletes, compaction.
    n = int(spec["sizes"][0])
    xs, lis = [], []
    for start in range(0, n, 100_000):
        x, li = gen.sample(min(100_000, n - start))
        xs.append(x)
        lis.append(li)
    data = np.vstack(xs)
    li_all = np.concatenate(lis)
    del xs, lis
    account(data, li_all)
    ids = np.arange(1, n + 1, dtype=np.int64)
    base = rss_bytes()
    vi = VectorIndex(dim, kind="hnsw")
    t = time.perf_counter()
    for start in range(0, n, 20_000):
        sl = slice(start, start + 20_000)
        vi.add(ids[sl], data[sl], [gen.langs[i] for i in li_all[sl]])
    build_s = time.perf_counter() - t
    mem = rss_bytes() - base
    queries = _prepared_queries(qvecs, qlangs, stats, vi.lang_slots)[:nq]
    slot_of_row = np.array([vi.lang_slots[gen.langs[i]] for i in range(len(gen.langs))])[li_all]

    def exact_top10(
        mask: npt.NDArray[np.bool_] | None, qs: Sequence[tuple[F32, F32]] | None = None
    ) -> list[set[int]]:
        out = []
        for q, off in qs if qs is not None else queries:
            s = data @ q - off[slot_of_row]
            if mask is not None:
                s[mask] = -np.inf
            top = np.argpartition(-s, 10)[:10]
            out.append({int(ids[i]) for i in top})
        return out

    gt = exact_top10(None)

    default_threads = faiss.omp_get_max_threads()

    def run(
        ef: int, k: int, threads: int = 1, qs: Sequence[tuple[F32, F32]] | None = None
    ) -> tuple[list[float], list[set[int]]]:
        vi.ef_search = ef
        got: list[set[int]] = []
        ts = []
        faiss.omp_set_num_threads(threads)
        try:
            for q, off in qs if qs is not None else queries:
                t0 = time.perf_counter()
                _, found = vi.search(q, k, lang_offsets=off)
                ts.append(time.perf_counter() - t0)
                got.append({int(i) for i in found[:10]})
        finally:
            faiss.omp_set_num_threads(default_threads)
        return ts, got

    def recall(got: list[set[int]], truth: list[set[int]]) -> float:
        return round(float(np.mean([len(g & t) / 10 for g, t in zip(got, truth, strict=True)])), 4)

    run(128, 100)
    efs: dict[str, Any] = {}
    for ef in (64, 128, 256, 512):
        ts, got = run(ef, 100)
        efs[str(ef)] = {"search_ms": summary_ms(ts), "recall_at_10": recall(got, gt)}
    ts_default, _ = run(128, 100, threads=default_threads)
    ts10, got10 = run(128, 10)
    # The same questions without the fairness centring and offsets (fairness=false).
    raw = [(v, np.zeros_like(off)) for v, (_, off) in zip(qvecs[:nq], queries, strict=False)]
    _, got_raw = run(128, 100, qs=raw)
    recall_raw = recall(got_raw, exact_top10(None, raw))
    vi.ef_search = 128
    # Deletes: every id that was in a top-10, plus 1,000 random ones.
    rnd = np.random.default_rng(1)
    doomed = {i for g in got10 for i in g} | {
        int(i) for i in rnd.choice(ids, size=min(1000, n // 10), replace=False)
    }
    t = time.perf_counter()
    removed = vi.remove(np.fromiter(doomed, dtype=np.int64))
    remove_s = time.perf_counter() - t
    mask = np.isin(ids, np.fromiter(doomed, dtype=np.int64))
    gt_after = exact_top10(mask)
    ts_del, got_del = run(128, 100)
    leaked = sum(len(g & doomed) for g in got_del)
    deletes: dict[str, Any] = {
        "deleted": len(doomed),
        "removed": removed,
        "remove_s": round(remove_s, 3),
        "leaked_before_checkpoint": leaked,
        "recall_at_10_after_deletes": recall(got_del, gt_after),
        "search_ms_with_tombstones": summary_ms(ts_del),
    }
    if spec.get("compact", True):
        with tempfile.TemporaryDirectory(prefix="citesearch-scale-") as d:
            t = time.perf_counter()
            vi.save(Path(d), Manifest(model_id="synthetic", dim=dim, generation=1, count=0, store_seq=0))
            deletes["checkpoint_with_tombstones_s"] = round(time.perf_counter() - t, 3)
            loaded = VectorIndex.load(Path(d))
            assert loaded is not None
            vi = loaded[0]
            _, got_loaded = run(128, 100)
            deletes["leaked_after_checkpoint_reload"] = sum(len(g & doomed) for g in got_loaded)
            deletes["recall_at_10_after_reload"] = recall(got_loaded, gt_after)
    return {
        "kind": "hnsw",
        "n": n,
        "M": 32,
        "ef_construction": 80,
        "build_s": round(build_s, 3),
        "rss_delta_bytes": mem,
        "bytes_per_passage": round(mem / n, 1),
        "data": gen.data,
        "service_k": 100,
        "search_threads": 1,
        "by_ef_search": efs,
        "ef128_default_threads_search_ms": summary_ms(ts_default),
        "k10_ef128": {"search_ms": summary_ms(ts10), "recall_at_10": recall(got10, gt)},
        "recall_at_10_ef128_without_fairness": recall_raw,
        "deletes": deletes,
    }


def _spawn_worker(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.perf", "--scale-worker", json.dumps(spec)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return cast("dict[str, Any]", json.loads(line[7:]))
    raise RuntimeError(f"scale worker failed ({proc.returncode}):\n{proc.stderr[-3000:]}")


def _crossing(curve: Sequence[dict[str, Any]], key: str, limit_ms: float) -> float | None:
    """n where search p50 passes `limit_ms`, interpolated log-log between measured points."""
    pts = [(p["n"], p[key]["p50"]) for p in curve]
    if pts and pts[0][1] > limit_ms:
        return float(pts[0][0]) if len(pts) == 1 else None
    for (n0, t0), (n1, t1) in itertools.pairwise(pts):
        if t0 <= limit_ms < t1:
            a = (math.log(limit_ms) - math.log(t0)) / (math.log(t1) - math.log(t0))
            return round(math.exp(math.log(n0) + a * (math.log(n1) - math.log(n0))), -2)
    return None


def section_scale(ctx: Ctx) -> None:
    """Flat curve up to 1M and HNSW at the planned sizes, on vectors fitted to the real ones."""
    from citesearch.index.service import IndexConfig, SearchService

    plan = ctx.plan
    assert ctx.real_dir is not None
    vecs: list[F32] = []
    langs: list[str] = []
    svc = SearchService(IndexConfig(data_dir=ctx.real_dir, checkpoint_every_s=3600), ctx.embedder)
    try:
        for a in ctx.articles:
            for p in svc.store.article_passages(str(a.id), svc.state.generation):
                if p.text in ctx.table:
                    vecs.append(ctx.table[p.text])
                    langs.append(p.language)
    finally:
        svc.close()
    fit = fit_gaussian(np.vstack(vecs).astype(np.float32), langs)
    qvecs = ctx.query_vectors
    if qvecs is None:
        _, qvecs = encode_question_floor(ctx.embedder, [q for q, _ in ctx.questions])
    qlangs = [lang for _, lang in ctx.questions][: len(qvecs)]
    reps = math.ceil(plan.scale_queries / len(qvecs))
    qv = np.vstack([qvecs] * reps)[: plan.scale_queries]
    ql = (qlangs * reps)[: plan.scale_queries]
    path = ctx.tmp / "fit.npz"
    np.savez(path, means=fit["means"], chol=fit["chol"], weights=fit["weights"], langs=np.array(fit["langs"]),
             real=fit["real"], real_li=fit["real_li"], qvecs=qv, qlangs=np.array(ql))  # fmt: skip
    log(f"scale: flat up to {plan.flat_sizes[-1]}")
    flat = _spawn_worker({"fit": str(path), "kind": "flat", "sizes": list(plan.flat_sizes), "queries": len(qv),
                          "seed": 7}, timeout=1800)  # fmt: skip
    hnsw = []
    for i, data in enumerate(plan.hnsw_data):
        for n in plan.hnsw_sizes:
            log(f"scale: hnsw at {n} ({data})")
            spec = {"fit": str(path), "kind": "hnsw", "sizes": [n], "queries": len(qv), "seed": 11, "data": data,
                    "compact": i == 0}  # fmt: skip
            hnsw.append(_spawn_worker(spec, timeout=3600))
    cross_default = _crossing(flat["curve"], "search_ms_default_threads", FLAT_TARGET_MS)
    cross_1 = _crossing(flat["curve"], "search_ms_1_thread", FLAT_TARGET_MS)
    extrap: dict[str, Any] = {}
    big = flat["curve"][-1]["n"]
    main_runs = [h for h in hnsw if h["data"] == plan.hnsw_data[0]]
    if main_runs and all(h["n"] < big for h in main_runs):
        h = main_runs[-1]
        n = h["n"]
        if len(main_runs) >= 2:
            h0, h1 = main_runs[-2], main_runs[-1]
            exp_build = math.log(h1["build_s"] / h0["build_s"]) / math.log(h1["n"] / h0["n"])
        else:
            exp_build = 1.0 + 1.0 / math.log(n)  # n log n
        extrap = {
            "label": f"EXTRAPOLATED from the HNSW build at {n:,} on {h['data']} data (not measured)",
            "n": big,
            "build_s": round(h["build_s"] * (big / n) ** exp_build, 0),
            "build_exponent": round(exp_build, 3),
            "bytes_per_passage": h["bytes_per_passage"],
            "memory_gib": round(h["bytes_per_passage"] * big / 2**30, 2),
            "search_ms_p50_ef128": round(
                h["by_ef_search"]["128"]["search_ms"]["p50"] * math.log(big) / math.log(n), 3
            ),
        }
    ctx.results["scale"] = {
        "data": "SYNTHETIC vectors. gaussian: sampled from a Gaussian fitted to the real XQuAD passage embeddings "
        "(per-language means, pooled covariance; no topical clusters). replica: a random real passage vector plus "
        f"noise σ={SIGMA}, renormalised (the service corpora's model). Queries: real question embeddings, centred "
        "and offset per language as the service does (fairness on). Flat curve on gaussian data; timings with one "
        "FAISS thread unless labelled default threads",
        "flat": flat,
        "hnsw": hnsw,
        "flat_crosses_10ms_at_n": {"default_threads": cross_default, "1_thread": cross_1},
        "hnsw_1m": extrap,
    }


# ---- probes: the automatic switch and deletes at the service level -------------------------------
def section_probes(ctx: Ctx) -> None:
    """Does `auto` switch to HNSW by itself, and do deleted articles stay gone (before and after a checkpoint)?"""
    from citesearch.index.search import SearchQuery
    from citesearch.index.service import IndexConfig, SearchService

    d = ctx.tmp / "probe"
    threshold = max(20, ctx.real_passages // 2)
    replay = ReplayEmbedder(ctx.embedder, dict(ctx.table), 0.0, seed=0)
    cfg = IndexConfig(data_dir=d, index_kind="auto", approx_threshold=threshold, checkpoint_every_s=3600)
    svc = SearchService(cfg, replay.as_embedder())
    out: dict[str, Any] = {"approx_threshold": threshold}
    try:
        for i in range(0, len(ctx.articles), 64):
            svc.upsert(ctx.articles[i : i + 64])
        svc.wait_for_background(600)  # the switch starts in the background once past the threshold
        st = svc.stats()
        out["passages"] = st.passages
        out["kind_after_upserts_past_threshold"] = st.index_kind
        svc.reindex()
        out["kind_after_reindex"] = svc.stats().index_kind
        victims = ctx.articles[: min(10, len(ctx.articles))]
        probes: list[tuple[str, str, F32]] = []
        for a in victims:
            rows = svc.store.article_passages(str(a.id), svc.state.generation)
            for r in rows[:2]:
                probes.append((str(a.id), r.text, ctx.table[r.text]))
        gone = {str(a.id) for a in victims}

        def leaks() -> tuple[int, int]:
            found_self = 0
            leaked = 0
            for aid, text, vec in probes:
                for mode in ("dense", "hybrid"):
                    hits = svc.search(
                        SearchQuery(text=text[:300], top_k=10, mode=mode), query_vector=vec
                    ).hits
                    arts = [h.passage.article_id for h in hits]
                    leaked += sum(1 for x in arts if x in gone)
                    found_self += int(aid in arts)
            return found_self, leaked

        before, _ = leaks()
        out["probe_queries"] = len(probes) * 2
        out["self_found_before_delete"] = before
        for aid in gone:
            svc.delete(aid)
        out["leaked_after_delete"] = leaks()[1]
        t = time.perf_counter()
        svc.checkpoint()
        out["checkpoint_s"] = round(time.perf_counter() - t, 3)
        out["leaked_after_checkpoint"] = leaks()[1]
    finally:
        svc.close()
    svc = SearchService(cfg, replay.as_embedder())
    try:
        out["kind_after_restart"] = svc.state.vectors.kind
        out["leaked_after_restart"] = leaks()[1]
    finally:
        svc.close()
    ctx.results["probes"] = out


# ---- targets and the markdown --------------------------------------------------------------------
def evaluate_targets(r: dict[str, Any]) -> list[dict[str, Any]]:
    """Each issue-6 target with the measured ratio, met or missed."""
    out: list[dict[str, Any]] = []

    def add(name: str, value: Any, target: str, met: bool | None, note: str = "") -> None:
        out.append({"target": name, "value": value, "goal": target, "met": met, "note": note})

    corpora = r.get("service", {}).get("corpora", [])
    for entry, limit in zip(corpora[1:], (1.15, 1.3), strict=False):
        v = entry["c1"]["ratio_p50"]
        add(
            f"search p50 / floor p50 at {entry['passages']:,} passages ({entry['in_process_breakdown_ms'].get('index_kind')})",
            v,
            f"≤ {limit}",
            v is not None and v <= limit,
        )
    if corpora:
        for entry in corpora:
            c16 = entry["concurrency"].get("16")
            if c16:
                v = c16["ratio_to_floor_qps"]
                add(
                    f"q/s at c=16 / floor q/s, {entry['passages']:,} passages",
                    v,
                    "≥ 0.9",
                    v is not None and v >= 0.9,
                )
    ing = r.get("ingest", {})
    if ing:
        v = ing["http_post_articles"]["ratio_to_bare"]
        add("ingest passages/s (POST /v1/articles) / bare encode", v, "≥ 0.9", v is not None and v >= 0.9)
    peer = r.get("peer", {})
    pi = peer.get("index", {})
    if "seconds" in pi.get("txtai", {}):
        v = ratio(pi["ours_in_process"]["seconds"], pi["txtai"]["seconds"])
        add("indexing time ours / txtai (same passages)", v, "< 1", v is not None and v < 1)
    pq = peer.get("query", {})
    if "latency_ms" in pq:
        v = pq["ratio_ours_hybrid_to_txtai_p50"]
        add("query p50 ours (hybrid) / txtai (dense)", v, "< 1", v is not None and v < 1)
        v = pq["ratio_ours_dense_to_txtai_p50"]
        add("query p50 ours (dense) / txtai (dense)", v, "< 1", v is not None and v < 1)
    sc = r.get("scale", {})
    if sc:
        cross = sc["flat_crosses_10ms_at_n"]["default_threads"]
        thr = r.get("approx_threshold_default", 200_000)
        auto_ok = r.get("probes", {}).get("kind_after_upserts_past_threshold") == "hnsw"
        add(
            "auto switches to HNSW where flat passes 10 ms",
            {"flat_10ms_at_n": cross, "approx_threshold": thr, "switch_on_upsert": auto_ok},
            "threshold ≤ crossing, switch without a manual reindex",
            cross is not None and thr <= cross and auto_ok,
        )
        for h in sc.get("hnsw", []):
            v = h["by_ef_search"]["128"]["recall_at_10"]
            add(f"HNSW recall@10 at ef_search=128, n={h['n']:,}", v, "≥ 0.98", v >= 0.98)
            leaked = h["deletes"]["leaked_before_checkpoint"] + h["deletes"].get(
                "leaked_after_checkpoint_reload", 0
            )
            add(f"HNSW deletes honoured, n={h['n']:,}", leaked, "0 deleted ids returned", leaked == 0)
    pr = r.get("probes", {})
    if pr:
        leaked = pr["leaked_after_delete"] + pr["leaked_after_checkpoint"] + pr["leaked_after_restart"]
        add(
            "service deletes honoured (HNSW index, before/after checkpoint and restart)",
            leaked,
            "0",
            leaked == 0,
        )
    return out


def _fmt(v: Any, nd: int = 1) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.{nd}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def render_md(r: dict[str, Any]) -> str:
    """bench/results/perf.md: the tables the README quotes."""
    m = r["machine"]
    v = m["versions"]
    lines = [
        f"# Performance ({r['plan']['name']} run)",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; {m['date']}; Python {m['python']}, "
        f"torch {v.get('torch')}, faiss-cpu {v.get('faiss-cpu')}, citesearch {v.get('citesearch')}, "
        f"txtai {v.get('txtai')}. The machine is shared: read the ratios, not the absolute times. "
        f"Raw figures: `bench/results/{r['out_name']}`; run `python -m bench.perf` (`--quick` for a smoke run).",
        "",
    ]
    cl = m.get("cpu_load_by_section", {})
    if cl:
        lines += [
            "CPU cores kept busy by other processes during each section (noise): "
            + ", ".join(f"{k} {v['foreign_cores']}" for k, v in cl.items())
            + ".",
            "",
        ]
    sv = r.get("service")
    if sv:
        lines += [
            "## Search: end to end against the floor",
            "",
            "Floor: bare `encode_queries` on one question, in process. Search: `POST /v1/search` (hybrid, top 5) "
            "to a real `citesearch serve` over loopback, same questions interleaved one by one at concurrency 1; "
            "q/s in closed loop, floor q/s measured in process at the same concurrency just before and after.",
            "",
            "| passages | data | floor p50 / p95 ms | search p50 / p95 / p99 ms | p50 ratio | p95 ratio | "
            + " | ".join(f"q/s c={c} (ratio)" for c in r["plan"]["concurrency"])
            + " | ready after |",
            "|---|---|---|---|---|---|" + "---|" * len(r["plan"]["concurrency"]) + "---|",
        ]
        for e in sv["corpora"]:
            c1 = e["c1"]
            conc = " | ".join(
                f"{_fmt(e['concurrency'][str(c)]['server']['qps'])} ({_fmt(e['concurrency'][str(c)]['ratio_to_floor_qps'], 2)})"
                for c in r["plan"]["concurrency"]
            )
            lines.append(
                f"| {e['passages']:,} | {'synthetic copies' if e['synthetic'] else 'real'} | "
                f"{_fmt(c1['floor_ms']['p50'])} / {_fmt(c1['floor_ms']['p95'])} | "
                f"{_fmt(c1['search_ms']['p50'])} / {_fmt(c1['search_ms']['p95'])} / {_fmt(c1['search_ms']['p99'])} | "
                f"{_fmt(c1['ratio_p50'], 2)} | {_fmt(c1['ratio_p95'], 2)} | {conc} | {_fmt(e['startup_to_ready_s'])} s |"
            )
        lines += [""]
        for e in sv["corpora"]:
            c1 = e["c1"]
            lines.append(
                f"- {e['passages']:,} passages: server-side `took_ms` p50 {_fmt(c1['server_took_ms']['p50'])} ms "
                f"(encode + search), so HTTP, JSON and the threadpool add ≈ "
                f"{_fmt(c1['search_ms']['p50'] - c1['server_took_ms']['p50'])} ms; server RSS "
                f"{_fmt(e['server_rss_after_mib'], 0)} MiB."
            )
        lines += [
            "",
            "Where the time goes past the encoder (in process, query vector given, p50 ms):",
            "",
            "| passages | index | hybrid | dense | lexical | language id | FAISS k=100 (default threads) | FAISS k=100 (1 thread) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for e in sv["corpora"]:
            b = e["in_process_breakdown_ms"]
            lines.append(
                f"| {e['passages']:,} | {b.get('index_kind')} | "
                + " | ".join(
                    _fmt(b.get(k, {}).get("p50"), 2)
                    for k in (
                        "hybrid",
                        "dense",
                        "lexical",
                        "language",
                        "faiss_default_threads",
                        "faiss_1_thread",
                    )
                )
                + " |"
            )
        if "server_rss_bytes_per_passage" in sv:
            lines += [
                "",
                f"Server memory per passage (RSS delta between the corpora): {_fmt(sv['server_rss_bytes_per_passage'], 0)} bytes.",
            ]
        syn = [e for e in sv["corpora"] if e["synthetic"]]
        if syn:
            lines += [
                "",
                "Synthetic corpora: the real XQuAD articles replicated under new ids; passage vectors are the real "
                f"ones plus Gaussian noise (σ={SIGMA}, renormalised), written through the real ingest path "
                "(`SearchService.upsert`) by an embedder wrapper carrying the real model id. Lexical posting lists "
                "grow with the copies, as they would with more articles.",
            ]
        lines.append("")
    sc = r.get("scale")
    if sc:
        lines += [
            "## Scale: exact against approximate (synthetic vectors)",
            "",
            sc["data"] + ".",
            "",
            "| passages | flat search p50 ms (default threads) | flat p50 ms (1 thread) | flat bytes/passage |",
            "|---|---|---|---|",
        ]
        for p in sc["flat"]["curve"]:
            lines.append(
                f"| {p['n']:,} | {_fmt(p['search_ms_default_threads']['p50'], 2)} | {_fmt(p['search_ms_1_thread']['p50'], 2)} | "
                f"{_fmt(p['bytes_per_passage'], 0)} |"
            )
        c = sc["flat_crosses_10ms_at_n"]
        lines += [
            "",
            f"Flat search passes 10 ms at ≈ {_fmt(c['default_threads'], 0)} passages with FAISS's default threads, "
            f"≈ {_fmt(c['1_thread'], 0)} with one thread per search. Flat deletes: "
            f"{sc['flat']['deletes']['deleted']} top-10 ids removed, {sc['flat']['deletes']['leaked']} returned.",
            "",
            "HNSW (M=32, efConstruction=80; searches take k=100 candidates as the service does, one FAISS thread):",
            "",
            "| data | passages | build s | bytes/passage | ef_search | p50 / p95 ms | recall@10 vs exact |",
            "|---|---|---|---|---|---|---|",
        ]
        for h in sc["hnsw"]:
            for ef, e in h["by_ef_search"].items():
                lines.append(
                    f"| {h['data']} | {h['n']:,} | {_fmt(h['build_s'])} | {_fmt(h['bytes_per_passage'], 0)} | {ef} | "
                    f"{_fmt(e['search_ms']['p50'], 2)} / {_fmt(e['search_ms']['p95'], 2)} | {e['recall_at_10']:.4f} |"
                )
        lines.append("")
        for h in sc["hnsw"]:
            d = h["deletes"]
            text = (
                f"- {h['data']}, {h['n']:,}: recall@10 at ef_search=128 without the fairness centring "
                f"{h['recall_at_10_ef128_without_fairness']:.4f}; p50 with FAISS's default threads "
                f"{_fmt(h['ef128_default_threads_search_ms']['p50'], 2)} ms. Deletes: {d['deleted']:,} ids removed "
                f"(every top-10 hit plus random ones), {d['leaked_before_checkpoint']} returned"
            )
            if "checkpoint_with_tombstones_s" in d:
                text += (
                    f", {d['leaked_after_checkpoint_reload']} after checkpoint and reload; the checkpoint that drops "
                    f"the tombstones (a full rebuild) took {_fmt(d['checkpoint_with_tombstones_s'])} s"
                )
            lines.append(text + f"; recall@10 after deletes {d['recall_at_10_after_deletes']:.4f}.")
        lines.append("")
        ex = sc.get("hnsw_1m")
        if ex:
            lines += [
                f"HNSW at {ex['n']:,}: {ex['label']}: build ≈ {_fmt(ex['build_s'], 0)} s, ≈ {ex['memory_gib']} GiB, "
                f"search p50 ≈ {ex['search_ms_p50_ef128']} ms at ef_search=128.",
                "",
            ]
    ing = r.get("ingest")
    if ing:
        b, h, ip, ri = (
            ing["bare_encode"],
            ing["http_post_articles"],
            ing["in_process_upsert"],
            ing["http_reindex"],
        )
        lines += [
            "## Ingest (real model, real XQuAD articles)",
            "",
            "| path | passages | seconds | passages/s | ratio to bare encode |",
            "|---|---|---|---|---|",
            f"| bare `encode_passages`, same batches | {b['passages']:,} | {_fmt(b['seconds'])} | {_fmt(b['passages_per_s'])} | 1.00 |",
            f"| `POST /v1/articles` ({ing['batch_articles']} articles per request) | {h['passages']:,} | {_fmt(h['seconds'])} | "
            f"{_fmt(h['passages_per_s'])} | {_fmt(h['ratio_to_bare'], 2)} |",
            f"| `SearchService.upsert` in process | {ip['passages']:,} | {_fmt(ip['seconds'])} | {_fmt(ip['passages_per_s'])} | "
            f"{_fmt(ip['ratio_to_bare'], 2)} |",
            f"| `POST /v1/reindex` → job done ({ri['articles']} articles) | {ri['passages']:,} | {_fmt(ri['seconds'])} | "
            f"{_fmt(ri['passages_per_s'])} | {_fmt(ri['ratio_to_bare'], 2)} |",
            "",
        ]
    peer = r.get("peer")
    if peer and "seconds" in peer.get("index", {}).get("txtai", {}):
        pi = peer["index"]
        pq = peer.get("query", {})
        lat = pq.get("latency_ms", {})
        t = pi["txtai"]
        lines += [
            f"## Peer: txtai {t['info'].get('version')} on the same model directory and passages",
            "",
            f"txtai: `Embeddings(path=<models/multilingual-e5-small>, content=True, backend='faiss', instructions="
            f"query:/passage:)`, FAISS `{t['info'].get('faiss') or 'IDMap,Flat'}`; it indexes the passages our "
            "splitter produced (ours also splits and builds the lexical index). Queries in process, interleaved.",
            "",
            "| system | index seconds | passages/s | query p50 ms | query p95 ms |",
            "|---|---|---|---|---|",
            f"| citesearch hybrid | {_fmt(pi['ours_in_process']['seconds'])} | {_fmt(pi['ours_in_process']['passages_per_s'])} | "
            f"{_fmt(lat.get('ours_hybrid', {}).get('p50'), 2)} | {_fmt(lat.get('ours_hybrid', {}).get('p95'), 2)} |",
            f"| citesearch dense | (same) | | {_fmt(lat.get('ours_dense', {}).get('p50'), 2)} | "
            f"{_fmt(lat.get('ours_dense', {}).get('p95'), 2)} |",
            f"| txtai | {_fmt(t['seconds'])} | {_fmt(t['passages_per_s'])} | {_fmt(lat.get('txtai', {}).get('p50'), 2)} | "
            f"{_fmt(lat.get('txtai', {}).get('p95'), 2)} |",
            "",
        ]
        if "vector_agreement_cosine" in pq:
            a = pq["vector_agreement_cosine"]
            lines += [
                f"Same vectors? cosine between txtai's and our embeddings of the same texts: passages min "
                f"{a['passages']['min']:.4f}, questions min {a['queries']['min']:.4f}.",
                "",
            ]
    tg = r.get("targets")
    if tg:
        lines += ["## Targets", "", "| target | measured | goal | met |", "|---|---|---|---|"]
        for t in tg:
            val = t["value"]
            sval = json.dumps(val) if isinstance(val, dict) else _fmt(val, 3)
            lines.append(
                f"| {t['target']} | {sval} | {t['goal']} | {'yes' if t['met'] else 'no'}{' — ' + t['note'] if t['note'] else ''} |"
            )
        lines.append("")
    return "\n".join(lines)


# ---- main ----------------------------------------------------------------------------------------
SECTIONS = ("ingest", "peer", "service", "scale", "probes")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run in under 3 minutes")
    ap.add_argument(
        "--sections", default=",".join(SECTIONS), help="comma-separated subset of " + ",".join(SECTIONS)
    )
    ap.add_argument("--hnsw-sizes", default="", help="override the HNSW sizes (e.g. 100000,300000)")
    ap.add_argument(
        "--out", type=Path, default=None, help="JSON output (default bench/results/perf[-quick].json)"
    )
    ap.add_argument(
        "--md", type=Path, default=None, help="markdown output (default bench/results/perf[-quick].md)"
    )
    ap.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        help="wait up to this many seconds for other processes to go quiet",
    )
    ap.add_argument("--scale-worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.scale_worker:
        res = scale_worker(json.loads(args.scale_worker))
        print("RESULT " + json.dumps(res), flush=True)
        return res

    plan = QUICK if args.quick else DEFAULT
    if args.hnsw_sizes:
        plan = Plan(**{**asdict(plan), "hnsw_sizes": tuple(int(x) for x in args.hnsw_sizes.split(","))})
    wanted = [s for s in args.sections.split(",") if s]
    unknown = set(wanted) - set(SECTIONS)
    if unknown:
        ap.error(f"unknown sections {sorted(unknown)}")
    suffix = "-quick" if args.quick else ""
    out = args.out or RESULTS / f"perf{suffix}.json"
    md = args.md or RESULTS / f"perf{suffix}.md"

    from bench.quality import load
    from citesearch.embeddings import load_embedder
    from citesearch.index.service import IndexConfig

    waited = wait_idle(args.wait_idle) if args.wait_idle > 0 else 0.0
    t_start = time.perf_counter()
    docs, questions = load()
    rnd = random.Random(1)
    picked = rnd.sample(questions, plan.questions)
    log(f"plan {plan.name}: sections {wanted}")
    embedder = load_embedder()
    results: dict[str, Any] = {
        "plan": asdict(plan),
        "machine": machine(),
        "model": embedder.model_id,
        "out_name": out.name,
        "approx_threshold_default": IndexConfig(data_dir=Path(".")).approx_threshold,
        "waited_for_idle_s": round(waited, 1),
    }
    with tempfile.TemporaryDirectory(prefix="citesearch-perf-") as tmp:
        ctx = Ctx(
            plan=plan,
            tmp=Path(tmp),
            embedder=embedder,
            docs=list(docs.values()),
            questions=[(q.text, q.language) for q in picked],
            results=results,
        )
        cpu_load: dict[str, Any] = {}
        # ingest builds the real corpus every other section starts from.
        snap = cpu_snapshot()
        section_ingest(ctx)
        cpu_load["ingest"] = foreign_load(snap)
        for name, fn in (
            ("peer", section_peer),
            ("service", section_service),
            ("scale", section_scale),
            ("probes", section_probes),
        ):
            if name in wanted:
                snap = cpu_snapshot()
                fn(ctx)
                cpu_load[name] = foreign_load(snap)
                log(f"{name}: other processes kept {cpu_load[name]['foreign_cores']} cores busy")
        if ctx.peer is not None:
            ctx.peer.close()
            ctx.peer = None
        results["machine"]["cpu_load_by_section"] = cpu_load
    if "ingest" not in wanted:
        results.pop("ingest", None)
    results["targets"] = evaluate_targets(results)
    results["seconds"] = round(time.perf_counter() - t_start, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, ensure_ascii=False, default=str) + "\n")
    md.write_text(render_md(results) + "\n")
    log(f"done in {results['seconds']:.0f}s: {out} and {md}")
    return results


if __name__ == "__main__":
    main()
