"""Soak benchmark (issue #10): search latency, write throughput and server memory under mixed load.

A real `citesearch serve` runs on a loopback port with a fresh data directory; readers and writers
are threads of this process, each with its own keep-alive HTTP connection (stdlib `http.client`,
15-minute timeouts, so a slow answer is measured, not lost). The phases:

1. warmup: ingest a base set of XQuAD articles (batches of 8), then ask questions one by one;
2. idle: readers only (the idle baseline);
3. writes_alone: writers only;
4. mixed: writers and readers together;
5. reindex: readers and one writer while `POST /v1/reindex` runs, until its job is done;
6. huge_article: readers while one article of about 1,000,000 characters is posted (and, if it is
   refused with a 422 naming the cap, one just under the cap; --quick posts ~100 kB instead);
7. memory_soak: writers and one reader for --soak-seconds, server RSS sampled every second;
8. verify: every acknowledged article is read back and compared with its last acknowledged text.

Writers own disjoint slices of the corpus. Each loops over creates and re-adds (batches of 1-4),
updates (1-4 articles, the text changed by a revision sentence that replaces the previous one, so
article sizes stay constant) and deletes, and remembers the last acknowledged text and passage
count of every id (a request that got no answer leaves its ids "uncertain": either state passes).

Run: `.venv/bin/python -m bench.soak [--quick] [--soak-seconds N] [--readers 4] [--writers 2]
[--port P] [--keep-data]`; `--render` re-evaluates the targets and redraws the markdown and the
figure from an existing JSON.
Writes bench/results/soak.{json,md,png} (soak-quick.* with --quick). Do not run the full soak on a
busy machine: every figure is an absolute time.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.perf import (
    RESULTS,
    ROOT,
    Http,
    _fmt,
    _log_tail,
    _stop,
    _wait_ready,
    free_port,
    machine,
    rss_bytes,
    summary_ms,
)
from bench.quality import Doc
from citesearch.index.articles import validate_article_id

EVAL = ROOT.parent / "shared" / "eval" / "xquad"
LIMIT_MS = 250.0
MB = 1024 * 1024


@dataclass(frozen=True)
class Plan:
    """Sizes and durations of one run."""

    name: str
    base_articles: int
    warmup_questions: int
    idle_s: float
    writes_s: float
    mixed_s: float
    soak_s: float
    soak_warmup_s: float
    corpus_limit: int | None
    """Articles of the corpus used at all (None: all 576); --quick uses fewer so its reindex is short."""
    huge_chars: int
    huge_fallback_chars: int | None
    """Size of the second huge article when the first is refused; None: just under the cap the 422 names."""
    title_checks: int
    reindex_max_s: float
    ingest_batch: int = 8
    questions_per_language: int = 100


FULL = Plan(
    name="full",
    base_articles=200,
    warmup_questions=100,
    idle_s=30,
    writes_s=60,
    mixed_s=120,
    soak_s=600,
    soak_warmup_s=60,
    corpus_limit=None,
    huge_chars=1_000_000,
    huge_fallback_chars=None,
    title_checks=100,
    reindex_max_s=1800,
)
QUICK = Plan(
    name="quick",
    base_articles=32,
    warmup_questions=20,
    idle_s=10,
    writes_s=20,
    mixed_s=30,
    soak_s=60,
    soak_warmup_s=15,
    corpus_limit=96,
    huge_chars=1_000_000,
    huge_fallback_chars=100_000,
    title_checks=30,
    reindex_max_s=600,
)


def log(msg: str) -> None:
    """Progress on stderr."""
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---- data ---------------------------------------------------------------------------------------
def load_corpus() -> list[Doc]:
    """The XQuAD articles, ids mapped to the API's alphabet ('/' -> '_')."""
    docs = []
    for line in (EVAL / "corpus.jsonl").read_text(encoding="utf-8").splitlines():
        d = json.loads(line)
        docs.append(Doc(validate_article_id(d["id"].replace("/", "_")), d["title"], d["language"], d["text"]))
    return docs


def load_questions(rnd: random.Random, per_language: int) -> list[tuple[str, str]]:
    """(question, language): a sample of `per_language` questions in each of the 12 languages."""
    by_lang: dict[str, list[str]] = defaultdict(list)
    for line in (EVAL / "queries.jsonl").read_text(encoding="utf-8").splitlines():
        d = json.loads(line)
        by_lang[d["language"]].append(d["question"])
    out = []
    for lang in sorted(by_lang):
        out += [(q, lang) for q in rnd.sample(by_lang[lang], min(per_language, len(by_lang[lang])))]
    rnd.shuffle(out)
    return out


def huge_text(docs: Sequence[Doc], n_chars: int | None = None, max_bytes: int | None = None) -> str:
    """Real English text from the corpus, repeated, cut to `n_chars` characters or `max_bytes` of UTF-8."""
    parts = [d.text for d in docs if d.language == "en"] or [d.text for d in docs]
    goal = n_chars if n_chars is not None else (max_bytes or 0)
    chunks: list[str] = []
    size = 0
    i = 0
    while size < goal + 1000:
        chunks.append(parts[i % len(parts)])
        size += len(chunks[-1]) + 2
        i += 1
    text = "\n\n".join(chunks)
    if n_chars is not None:
        text = text[:n_chars]
    if max_bytes is not None:
        text = text.encode("utf-8")[:max_bytes].decode("utf-8", "ignore")
    cut = max(text.rfind(" "), text.rfind("\n"))
    return text[:cut] if cut > len(text) // 2 else text


# ---- measurements -------------------------------------------------------------------------------
@dataclass(slots=True)
class Sample:
    """One HTTP request: what, when (seconds since the start), status (0: no response) and result."""

    kind: str
    op: str
    phase: str
    t0: float
    t1: float
    status: int
    ok: bool
    error: str | None = None
    articles: int = 0
    passages: int = 0

    @property
    def seconds(self) -> float:
        return self.t1 - self.t0


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (Linux /proc), 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """Busy CPU seconds of the whole machine since boot."""
    vals = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:8]]
    return (sum(vals) - vals[3] - vals[4]) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    return me.ru_utime + me.ru_stime


def amx() -> bool:
    """True when the CPU advertises AMX bf16 (the fast path of the model on recent Xeons)."""
    try:
        return "amx_bf16" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


@dataclass
class Expected:
    """The last acknowledged state of an article."""

    text: str
    title: str
    passages: int


class Writer:
    """A writer thread's own slice of the corpus and what the server acknowledged for each id."""

    def __init__(self, idx: int, docs: Sequence[Doc], seed: int) -> None:
        self.idx = idx
        self.docs = {d.id: d for d in docs}
        self.rnd = random.Random(seed)
        self.pending = [d.id for d in docs]
        self.live: dict[str, Expected] = {}
        self.deleted: set[str] = set()
        self.uncertain: dict[str, list[Expected | None]] = {}
        self.revision = 0
        self.anomalies: list[str] = []
        self.ops: Counter[str] = Counter()

    def _text(self, art_id: str) -> str:
        self.revision += 1
        return f"{self.docs[art_id].text}\n\nRevision {self.idx}.{self.revision} of this article."

    def step(self, soak: Soak, client: Http) -> bool:
        """One write: delete (15 %), create or re-add a batch (40 %), else update a batch.

        False when the request got no response (the caller backs off)."""
        r = self.rnd.random()
        n = self.rnd.randint(1, 4)
        addable = self.pending + sorted(self.deleted)
        if r < 0.15 and len(self.live) > max(4, len(self.docs) // 3):
            return self._delete(soak, client, self.rnd.choice(sorted(self.live)))
        if (r < 0.55 or not self.live) and addable:
            ids = self.pending[:n] if self.pending else self.rnd.sample(addable, min(n, len(addable)))
            return self._upsert(soak, client, ids, "create" if self.pending else "readd")
        if self.live:
            return self._upsert(
                soak, client, self.rnd.sample(sorted(self.live), min(n, len(self.live))), "update"
            )
        return False  # nothing to write (every id uncertain): back off

    def _upsert(self, soak: Soak, client: Http, ids: list[str], op: str) -> bool:
        texts = {
            i: self.docs[i].text if op == "create" and self.rnd.random() < 0.5 else self._text(i) for i in ids
        }
        body = {
            "articles": [
                {
                    "id": i,
                    "title": self.docs[i].title,
                    "text": texts[i],
                    "language": self.docs[i].language,
                    "source": f"soak-writer-{self.idx}",
                }
                for i in ids
            ]
        }
        self.ops[op] += 1
        sample, data = soak.call(client, "write", op, "POST", "/v1/articles", body, expect=(200,))
        if sample.status == 200 and data is not None:
            for res in json.loads(data)["results"]:
                art_id = res["id"]
                self.live[art_id] = Expected(texts[art_id], self.docs[art_id].title, int(res["passages"]))
                self.deleted.discard(art_id)
                if art_id in self.pending:
                    self.pending.remove(art_id)
                if res["status"] in ("created", "updated"):
                    sample.articles += 1
                    sample.passages += int(res["passages"])
        elif sample.status == 0:  # no answer: the write may or may not have happened
            for i in ids:
                before = self.live.pop(i, None)
                self.deleted.discard(i)
                if i in self.pending:
                    self.pending.remove(i)
                self.uncertain[i] = [before, Expected(texts[i], self.docs[i].title, -1)]
        return sample.status != 0

    def _delete(self, soak: Soak, client: Http, art_id: str) -> bool:
        self.ops["delete"] += 1
        sample, _ = soak.call(client, "delete", "delete", "DELETE", f"/v1/articles/{art_id}", expect=(204,))
        status = sample.status
        if status == 204:
            self.live.pop(art_id)
            self.deleted.add(art_id)
        elif status == 404:
            self.anomalies.append(f"DELETE {art_id} -> 404 after an acknowledged write")
            self.live.pop(art_id)
            self.deleted.add(art_id)
        elif status == 0:
            self.uncertain[art_id] = [self.live.pop(art_id), None]
        return status != 0


# ---- the run ------------------------------------------------------------------------------------
class ServerDied(RuntimeError):
    """The server process exited during the run."""


class Soak:
    """The server, the clients' shared record, and the phases."""

    def __init__(
        self, plan: Plan, args: argparse.Namespace, proc: subprocess.Popen[bytes], port: int
    ) -> None:
        self.plan = plan
        self.args = args
        self.proc = proc
        self.port = port
        self.t_start = time.perf_counter()
        self.samples: list[Sample] = []
        self.phase = self.last_phase = "startup"
        self.phases: list[dict[str, Any]] = []
        self.rss: list[tuple[float, float, str]] = []
        self.server_cpu: list[tuple[float, float]] = []
        self.stop_sampler = threading.Event()
        self.questions: list[tuple[str, str]] = []
        self.base: dict[str, Expected] = {}
        self.writers: list[Writer] = []
        self.results: dict[str, Any] = {}

    def now(self) -> float:
        return time.perf_counter() - self.t_start

    # -- requests --
    def call(
        self,
        client: Http,
        kind: str,
        op: str,
        method: str,
        path: str,
        body: object | None = None,
        expect: tuple[int, ...] = (200,),
    ) -> tuple[Sample, bytes | None]:
        """One timed request, recorded; its sample (status 0: no response came back) and body."""
        phase = self.phase
        t0 = self.now()
        try:
            status, data = client.request(method, path, body)
        except Exception as exc:  # no response: recorded, the caller decides
            s = Sample(kind, op, phase, t0, self.now(), 0, False, f"{type(exc).__name__}: {exc}"[:300])
            self.samples.append(s)
            return s, None
        t1 = self.now()
        err = None if status in expect else data[:300].decode("utf-8", "replace")
        s = Sample(kind, op, phase, t0, t1, status, status in expect, err)
        self.samples.append(s)
        return s, data

    # -- background: RSS and CPU every second --
    def sampler(self) -> None:
        while not self.stop_sampler.is_set():
            t = self.now()
            rss = rss_bytes(self.proc.pid) / MB if self.proc.poll() is None else 0.0
            self.rss.append((round(t, 2), round(rss, 2), self.phase))
            self.server_cpu.append((round(t, 2), proc_cpu_seconds(self.proc.pid)))
            self.stop_sampler.wait(1.0)

    def alive(self) -> None:
        if self.proc.poll() is not None:
            raise ServerDied(f"server exited with {self.proc.returncode}")

    # -- threads --
    def reader(self, idx: int, stop: threading.Event) -> None:
        client = Http(self.port)
        rnd = random.Random(f"{self.args.seed}-{self.phase}-reader-{idx}")
        try:
            while not stop.is_set():
                q, _lang = rnd.choice(self.questions)
                sample, _ = self.call(
                    client, "search", "search", "POST", "/v1/search", {"query": q, "top_k": 5}
                )
                if sample.status == 0:
                    stop.wait(0.5)
        finally:
            client.close()

    def writer(self, w: Writer, stop: threading.Event) -> None:
        client = Http(self.port)
        try:
            while not stop.is_set():
                if not w.step(self, client):
                    stop.wait(0.5)
        except Exception as exc:  # a bug in the writer must not hang the run
            w.anomalies.append(f"writer crashed: {type(exc).__name__}: {exc}")
            log(f"writer {w.idx} crashed: {exc!r}")
        finally:
            client.close()

    @contextlib.contextmanager
    def phase_window(self, name: str, readers: int, writers: int) -> Iterator[dict[str, Any]]:
        """Label requests and RSS samples with `name`; record the window, CPU use and load."""
        self.alive()
        self.phase = self.last_phase = name
        info: dict[str, Any] = {
            "name": name,
            "readers": readers,
            "writers": writers,
            "start": round(self.now(), 3),
        }
        cpu0 = (
            time.perf_counter(),
            machine_busy_seconds(),
            own_cpu_seconds(),
            proc_cpu_seconds(self.proc.pid),
        )
        log(f"phase {name}: {readers} readers, {writers} writers")
        try:
            yield info
        finally:
            wall = max(time.perf_counter() - cpu0[0], 1e-9)
            server = (proc_cpu_seconds(self.proc.pid) - cpu0[3]) / wall
            ours = (own_cpu_seconds() - cpu0[2]) / wall
            busy = (machine_busy_seconds() - cpu0[1]) / wall
            info["end"] = round(self.now(), 3)
            info["cpu_cores"] = {
                "server": round(server, 2),
                "bench_clients": round(ours, 2),
                "other_processes": round(max(busy - server - ours, 0.0), 2),
            }
            self.phases.append(info)
            self.phase = "between"

    @contextlib.contextmanager
    def load(self, readers: int, writers: Sequence[Writer]) -> Iterator[threading.Event]:
        """Reader and writer threads running until the block ends (they finish their current request)."""
        stop = threading.Event()
        threads = [
            threading.Thread(target=self.reader, args=(i, stop), name=f"reader-{i}", daemon=True)
            for i in range(readers)
        ] + [
            threading.Thread(target=self.writer, args=(w, stop), name=f"writer-{w.idx}", daemon=True)
            for w in writers
        ]
        for th in threads:
            th.start()
        try:
            yield stop
        finally:
            stop.set()
            for th in threads:
                th.join(timeout=960)

    def run_for(self, seconds: float) -> None:
        end = time.perf_counter() + seconds
        while (left := end - time.perf_counter()) > 0:
            self.alive()
            time.sleep(min(1.0, left))

    # -- phases --
    def phase_warmup(self, base: Sequence[Doc]) -> None:
        client = Http(self.port)
        with self.phase_window("warmup", 1, 1):
            try:
                b = self.plan.ingest_batch
                for i in range(0, len(base), b):
                    chunk = base[i : i + b]
                    body = {
                        "articles": [
                            {
                                "id": d.id,
                                "title": d.title,
                                "text": d.text,
                                "language": d.language,
                                "source": "soak-base",
                            }
                            for d in chunk
                        ]
                    }
                    sample, data = self.call(client, "write", "base", "POST", "/v1/articles", body)
                    if sample.status != 200 or data is None:
                        raise RuntimeError(f"base ingest failed: {sample.status} {sample.error}")
                    res = json.loads(data)["results"]
                    sample.articles = len(res)
                    sample.passages = sum(int(r["passages"]) for r in res)
                    for d, r in zip(chunk, res, strict=True):
                        self.base[d.id] = Expected(d.text, d.title, int(r["passages"]))
                for q, _ in self.questions[: self.plan.warmup_questions]:
                    self.call(client, "search", "search", "POST", "/v1/search", {"query": q, "top_k": 5})
            finally:
                client.close()

    def phase_timed(self, name: str, seconds: float, readers: int, writers: Sequence[Writer]) -> None:
        with self.phase_window(name, readers, len(writers)), self.load(readers, writers):
            self.run_for(seconds)

    def phase_reindex(self, readers: int, writers: Sequence[Writer]) -> None:
        client = Http(self.port)
        job: dict[str, Any] = {}
        with self.phase_window("reindex", readers, len(writers)) as info, self.load(readers, writers):
            try:
                t0 = time.perf_counter()
                sample, data = self.call(
                    client, "reindex", "reindex", "POST", "/v1/reindex", None, expect=(202,)
                )
                if sample.status != 202 or data is None:
                    job = {"status": f"refused ({sample.status})", "error": sample.error}
                else:
                    job = {"job_id": json.loads(data)["job_id"], "status": "running"}
                    self._poll_job(client, job, t0)
                job["seconds"] = round(time.perf_counter() - t0, 2)
            finally:
                client.close()
                info["job"] = job
        self.results["reindex"] = job

    def _poll_job(self, client: Http, job: dict[str, Any], t0: float) -> None:
        """Poll GET /v1/jobs/{id} every 0.5 s until the job ends (or the plan's limit), updating `job`."""
        while time.perf_counter() - t0 < self.plan.reindex_max_s:
            self.alive()
            time.sleep(0.5)
            sample, data = self.call(client, "job", "job", "GET", f"/v1/jobs/{job['job_id']}")
            if sample.status == 200 and data is not None:
                j = json.loads(data)
                job.update(status=j["status"], progress=j["progress"], message=j["message"], error=j["error"])
                if j["status"] in ("succeeded", "failed"):
                    return
        job["status"] = f"not done after {self.plan.reindex_max_s:.0f} s"

    def phase_huge(self, readers: int, docs: Sequence[Doc]) -> None:
        client = Http(self.port)
        attempts: list[dict[str, Any]] = []
        with self.phase_window("huge_article", readers, 1), self.load(readers, []):
            try:
                self.run_for(2.0)
                text = huge_text(docs, n_chars=self.plan.huge_chars)
                attempts.append(self._post_huge(client, "soak-huge-1", text))
                if attempts[-1]["status"] != 200:
                    text2, why = self._second_huge(attempts[-1], docs)
                    attempts.append(self._post_huge(client, "soak-huge-2", text2, why))
                self.run_for(2.0)
            finally:
                client.close()
        self.results["huge_attempts"] = attempts

    def _second_huge(self, refused: dict[str, Any], docs: Sequence[Doc]) -> tuple[str, str]:
        """After a refusal: an article just under the cap the 422 names (in bytes, or in passages, sized
        from the chars per passage seen so far), else (or with --quick) one of ~100 kB."""
        msg = refused.get("error") or ""
        m = re.search(r"(?:limit|cap|at most|maximum)\D{0,30}?(\d[\d,]*)", msg)
        if self.plan.huge_fallback_chars is not None or refused["status"] != 422 or not m:
            n = self.plan.huge_fallback_chars or 100_000
            return huge_text(docs, n_chars=n), f"after a {refused['status']}: ~{n // 1000} kB"
        cap = int(m.group(1).replace(",", ""))
        if "passage" in msg and "byte" not in msg:
            per = sum(len(e.text) for e in self.base.values()) / max(
                sum(e.passages for e in self.base.values()), 1
            )
            return huge_text(docs, n_chars=int(cap * per * 0.9)), f"under the cap of {cap} passages"
        return huge_text(docs, max_bytes=cap - 1024), f"just under the cap of {cap} bytes"

    def _post_huge(self, client: Http, art_id: str, text: str, why: str = "first try") -> dict[str, Any]:
        title = "Soak test: a very long article"
        log(f"posting {art_id}: {len(text):,} characters, {len(text.encode()):,} bytes ({why})")
        body = {
            "articles": [
                {"id": art_id, "title": title, "text": text, "language": "en", "source": "soak-huge"}
            ]
        }
        s, data = self.call(client, "huge", "huge", "POST", "/v1/articles", body, expect=(200, 422))
        status = s.status
        out: dict[str, Any] = {
            "id": art_id,
            "why": why,
            "chars": len(text),
            "bytes": len(text.encode()),
            "status": status,
            "t0": round(s.t0, 3),
            "t1": round(s.t1, 3),
            "seconds": round(s.seconds, 3),
        }
        if status == 200 and data is not None:
            res = json.loads(data)["results"][0]
            out["passages"] = s.passages = int(res["passages"])
            s.articles = 1
            self.base[art_id] = Expected(text, title, int(res["passages"]))
        elif data is not None:
            out["error"] = data[:500].decode("utf-8", "replace")
        return out

    def phase_verify(self) -> None:
        client = Http(self.port)
        n: Counter[str] = Counter()
        out: dict[str, Any] = {}
        problems: list[str] = []
        live: dict[str, Expected] = dict(self.base)
        deleted: set[str] = set()
        uncertain: dict[str, list[Expected | None]] = {}
        for w in self.writers:
            live.update(w.live)
            deleted |= w.deleted
            uncertain.update(w.uncertain)
            problems += w.anomalies
            n["lost"] += sum("404 after" in a for a in w.anomalies)
        with self.phase_window("verify", 0, 0):
            try:
                for art_id, exp in sorted(live.items()):
                    verdict = self._judge(self._fetch(client, art_id), exp)
                    n["checked"] += 1
                    n[verdict] += 1
                    if verdict != "ok":
                        problems.append(f"{art_id}: {verdict}")
                for art_id in sorted(deleted):
                    n["deleted_checked"] += 1
                    if self._fetch(client, art_id) is None:
                        n["deleted_ok"] += 1
                    else:
                        n["resurrected"] += 1
                        problems.append(f"{art_id}: deleted but still served")
                for art_id, options in sorted(uncertain.items()):
                    got = self._fetch(client, art_id)
                    n["uncertain_checked"] += 1
                    ok = any(
                        (o is None and got is None)
                        or (o is not None and self._judge(got, o, strict=False) == "ok")
                        for o in options
                    )
                    n["uncertain_ok" if ok else "uncertain_bad"] += 1
                sample, data = self.call(client, "verify", "stats", "GET", "/v1/stats")
                stats = json.loads(data) if sample.status == 200 and data else {}
                at_most = len(live) + sum(1 for o in uncertain.values() if o[-1] is not None)
                out.update(
                    stats=stats,
                    expected_articles_at_least=len(live),
                    expected_articles_at_most=at_most,
                    stats_consistent=bool(stats) and stats["passages"] == stats["index_vectors"],
                    articles_count_ok=bool(stats) and len(live) <= stats["articles"] <= at_most,
                )
                titles = [(i, e.title) for i, e in sorted(live.items()) if not i.startswith("soak-huge")]
                picked = random.Random(self.args.seed).sample(
                    titles, min(self.plan.title_checks, len(titles))
                )
                for art_id, title in picked:
                    body = {"query": title, "top_k": 1, "filters": {"article_id": [art_id]}}
                    sample, data = self.call(client, "verify", "title_search", "POST", "/v1/search", body)
                    res = json.loads(data)["results"] if sample.status == 200 and data else []
                    n["title_searches"] += 1
                    n["title_found" if res and res[0]["article_id"] == art_id else "title_missing"] += 1
            finally:
                client.close()
                keys = (
                    "checked ok lost stale partial deleted_checked deleted_ok resurrected uncertain_checked"
                )
                keys += " uncertain_ok uncertain_bad title_searches title_found title_missing"
                self.results["verify"] = {
                    **{k: n[k] for k in keys.split()},
                    **out,
                    "problems": problems[:50],
                }

    def _fetch(self, client: Http, art_id: str) -> dict[str, Any] | None:
        s, data = self.call(client, "verify", "get", "GET", f"/v1/articles/{art_id}", expect=(200, 404))
        if s.status == 404:
            return None
        if s.status != 200 or data is None:
            raise RuntimeError(f"GET /v1/articles/{art_id} -> {s.status}")
        return dict(json.loads(data))

    @staticmethod
    def _judge(got: dict[str, Any] | None, exp: Expected, strict: bool = True) -> str:
        """ok, lost (404), stale (other text) or partial (passages missing or not matching the text)."""
        if got is None:
            return "lost"
        if got["text"] != exp.text:
            return "stale"
        text, passages = got["text"], got["passages"]
        if not passages or any(text[p["char_start"] : p["char_end"]] != p["text"] for p in passages):
            return "partial"
        if strict and exp.passages >= 0 and len(passages) != exp.passages:
            return "partial"
        return "ok"


# ---- analysis -----------------------------------------------------------------------------------
def lat_summary(seconds: Sequence[float]) -> dict[str, float]:
    """summary_ms plus the maximum."""
    out = summary_ms(seconds)
    if seconds:
        out["max"] = round(max(seconds) * 1000, 3)
    return out


def phase_report(soak: Soak, info: dict[str, Any]) -> dict[str, Any]:
    name = info["name"]
    secs = max(info["end"] - info["start"], 1e-9)
    ss = [s for s in soak.samples if s.phase == name]
    search = [s.seconds for s in ss if s.kind == "search" and s.ok]
    writes = [s for s in ss if s.kind in ("write", "huge") and s.status == 200]
    errors: dict[str, dict[str, int]] = defaultdict(dict)
    for s in ss:
        if not s.ok:
            key = str(s.status) if s.status else f"no_response:{(s.error or '?').split(':')[0]}"
            errors[s.kind][key] = errors[s.kind].get(key, 0) + 1
    rss = [mb for t, mb, _p in soak.rss if info["start"] <= t <= info["end"] and mb > 0]
    return {
        **info,
        "seconds": round(secs, 2),
        "search_ms": lat_summary(search),
        "searches_per_s": round(len(search) / secs, 2),
        "writes": {
            "requests": len(writes),
            "by_op": dict(Counter(s.op for s in writes)),
            "articles": sum(s.articles for s in writes),
            "passages": sum(s.passages for s in writes),
            "articles_per_s": round(sum(s.articles for s in writes) / secs, 3),
            "passages_per_s": round(sum(s.passages for s in writes) / secs, 3),
            "latency_ms": lat_summary([s.seconds for s in writes]),
        },
        "errors": {k: dict(v) for k, v in errors.items()},
        "errors_5xx": sum(1 for s in ss if s.status >= 500),
        "rss_mb": {"start": rss[0], "end": rss[-1], "max": max(rss)} if rss else {},
    }


def huge_report(soak: Soak, idle_p50: float | None) -> dict[str, Any]:
    attempts = soak.results.get("huge_attempts", [])
    for a in attempts:
        over = [
            s
            for s in soak.samples
            if s.kind == "search" and s.phase == "huge_article" and s.t0 < a["t1"] and s.t1 > a["t0"]
        ]
        a["overlapping_searches"] = len(over)
        a["overlapping_search_ms"] = lat_summary([s.seconds for s in over if s.ok])
        a["overlapping_errors"] = sum(1 for s in over if not s.ok)
        a["worst_overlapping_ms"] = (
            round(max((s.seconds for s in over), default=0.0) * 1000, 3) if over else None
        )
    worst = max(
        (a["worst_overlapping_ms"] for a in attempts if a.get("worst_overlapping_ms") is not None),
        default=None,
    )
    return {
        "attempts": attempts,
        "worst_overlapping_ms": worst,
        "idle_p50_ms": idle_p50,
        "worst_delay_ms": round(worst - idle_p50, 3) if worst is not None and idle_p50 is not None else None,
    }


def memory_report(soak: Soak, info: dict[str, Any] | None, warm_s: float) -> dict[str, Any]:
    if info is None:
        return {}
    pts = [(t, mb) for t, mb, p in soak.rss if p == "memory_soak" and mb > 0]
    if len(pts) < 3:
        return {"samples": len(pts)}
    warm_end = info["start"] + warm_s
    post = [(t, mb) for t, mb in pts if t >= warm_end]
    at_warm = [mb for t, mb in pts if warm_end - 5 <= t <= warm_end] or [pts[0][1]]
    rss_warm = float(np.median(at_warm))
    rss_end = float(np.median([mb for _t, mb in pts[-5:]]))
    slope = None
    if len(post) >= 3:
        t, mb = np.asarray(post).T
        slope = round(float(np.polyfit(t / 60.0, mb, 1)[0]), 3)
    return {
        "samples": len(pts),
        "warmup_s": warm_s,
        "warmup_end_t": round(warm_end, 2),
        "rss_start_mb": round(pts[0][1], 1),
        "rss_after_warmup_mb": round(rss_warm, 1),
        "rss_end_mb": round(rss_end, 1),
        "rss_max_mb": round(max(mb for _t, mb in pts), 1),
        "growth_after_warmup_mb": round(rss_end - rss_warm, 1),
        "slope_mb_per_min": slope,
        "note": "RSS after warm-up: median of the samples of the 5 s before it ends; at the end: median of the last 5",
    }


def timeline(soak: Soak) -> dict[str, Any]:
    """Per-second search latency (by completion second), writes and RSS: what the figure draws."""
    by_sec: dict[int, list[float]] = defaultdict(list)
    errs: Counter[int] = Counter()
    wr: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for s in soak.samples:
        sec = int(s.t1)
        if s.kind == "search" and s.phase != "verify":
            if s.ok:
                by_sec[sec].append(s.seconds * 1000)
            else:
                errs[sec] += 1
        elif s.kind in ("write", "huge") and s.ok:
            wr[sec][0] += s.passages
            wr[sec][1] += s.articles
    rss_rows: list[list[Any]] = []
    cpu = soak.server_cpu
    for i, (t, mb, phase) in enumerate(soak.rss):
        cores = None
        if 0 < i < len(cpu) and cpu[i][0] > cpu[i - 1][0]:
            cores = round((cpu[i][1] - cpu[i - 1][1]) / (cpu[i][0] - cpu[i - 1][0]), 2)
        rss_rows.append([t, mb, phase, cores])
    rows = []
    for sec in sorted(set(by_sec) | set(errs)):
        a = np.asarray(by_sec.get(sec, [np.nan]))
        rows.append(
            [sec, len(by_sec.get(sec, []))]
            + [None if np.isnan(a).all() else round(float(np.nanpercentile(a, p)), 2) for p in (50, 95, 99)]
            + [None if np.isnan(a).all() else round(float(np.nanmax(a)), 2), errs[sec]]
        )
    return {
        "search_per_second": {
            "columns": ["t", "n", "p50_ms", "p95_ms", "p99_ms", "max_ms", "errors"],
            "rows": rows,
        },
        "writes_per_second": {
            "columns": ["t", "passages", "articles"],
            "rows": [[k, *wr[k]] for k in sorted(wr)],
        },
        "rss": {"columns": ["t", "rss_mb", "phase", "server_cpu_cores"], "rows": rss_rows},
    }


def _get(d: dict[str, Any], *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def evaluate_targets(r: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue #10's targets, each MET or MISSED (None values: not measured, so MISSED)."""
    ph = r.get("phases", {})
    idle95 = _get(ph, "idle", "search_ms", "p95")
    m95, m99 = _get(ph, "mixed", "search_ms", "p95"), _get(ph, "mixed", "search_ms", "p99")
    r99 = _get(ph, "reindex", "search_ms", "p99")
    delay = _get(r, "huge_article", "worst_delay_ms")
    wa, wm = (
        _get(ph, "writes_alone", "writes", "passages_per_s"),
        _get(ph, "mixed", "writes", "passages_per_s"),
    )
    growth = _get(r, "memory_soak", "growth_after_warmup_mb")
    v = r.get("verify") or {}
    bad = (
        None
        if not v
        else sum(v.get(k, 0) for k in ("lost", "stale", "partial", "resurrected", "uncertain_bad"))
    )
    n5xx = sum(p.get("errors_5xx", 0) for p in ph.values()) if ph else None

    def t(target: str, value: Any, goal: str, met: bool | None, note: str = "") -> dict[str, Any]:
        return {"target": target, "value": value, "goal": goal, "met": bool(met), "note": note}

    ratio95 = round(m95 / idle95, 2) if m95 is not None and idle95 else None
    wratio = round(wm / wa, 3) if wm is not None and wa else None
    return [
        t(
            "mixed (writers + readers): search p95 vs idle p95",
            ratio95,
            "≤ 3×",
            ratio95 is not None and ratio95 <= 3,
            f"{m95} vs {idle95} ms",
        ),
        t("mixed: search p99", m99, f"≤ {LIMIT_MS:.0f} ms", m99 is not None and m99 <= LIMIT_MS),
        t("reindex: search p99", r99, f"≤ {LIMIT_MS:.0f} ms", r99 is not None and r99 <= LIMIT_MS),
        t(
            "reindex job under load succeeds (a check of this benchmark, not in the issue)",
            _get(r, "reindex", "status"),
            "succeeded",
            _get(r, "reindex", "status") == "succeeded",
            str(_get(r, "reindex", "error") or ""),
        ),
        t(
            "huge article: worst overlapping search minus idle p50",
            delay,
            f"≤ {LIMIT_MS:.0f} ms",
            delay is not None and delay <= LIMIT_MS,
            f"worst {_get(r, 'huge_article', 'worst_overlapping_ms')} ms",
        ),
        t(
            "write throughput under read load (mixed / writes_alone, passages/s)",
            wratio,
            "≥ 0.6",
            wratio is not None and wratio >= 0.6,
            f"{wm} vs {wa} passages/s",
        ),
        t(
            "RSS growth over the memory soak after warm-up (MB)",
            growth,
            "≤ 50 MB",
            growth is not None and growth <= 50,
        ),
        t(
            "5xx responses (whole run)",
            n5xx,
            "0",
            n5xx == 0 and not r.get("aborted"),
            "run aborted: " + str(r["aborted"]) if r.get("aborted") else "",
        ),
        t(
            "lost, stale, partial or resurrected articles; stats passages == index_vectors",
            bad,
            "0, consistent",
            bad == 0 and bool(v.get("stats_consistent")) and bool(v.get("articles_count_ok")),
            f"stats consistent: {v.get('stats_consistent')}, article count as expected: {v.get('articles_count_ok')}",
        ),
    ]


# ---- output -------------------------------------------------------------------------------------
def render_md(r: dict[str, Any]) -> str:
    m = r.get("machine", {})
    v = m.get("versions", {})
    plan = r.get("plan", {})
    lines = [
        f"# Soak benchmark ({plan.get('name')})",
        "",
        f"Machine: {m.get('cpu')}, {m.get('cores')} cores, AMX {'yes' if m.get('amx') else 'no'}, "
        f"{m.get('memory_gib')} GiB; Python {m.get('python')}, torch {v.get('torch')}, faiss-cpu {v.get('faiss-cpu')}; "
        f"{m.get('date')}. Server: `citesearch serve` on loopback, fresh data dir, ready after "
        f"{_fmt(r.get('server', {}).get('ready_s'))} s; clients: threads of the bench process, one keep-alive "
        f"connection each. Corpus: {r.get('corpus', {}).get('articles')} XQuAD articles "
        f"({r.get('corpus', {}).get('base')} ingested at warm-up); questions from queries.jsonl in 12 languages. "
        "Figure: `" + str(r.get("png_name")) + "`; raw figures: `" + str(r.get("out_name")) + "`.",
        "",
    ]
    if r.get("aborted"):
        lines += [f"**Run aborted**: {r['aborted']}", ""]
    lines += [
        "## Phases",
        "",
        "| phase | s | readers / writers | searches | search p50 / p95 / p99 / max ms | writes | passages/s | "
        "articles/s | errors (non-2xx by status) | 5xx | RSS start → end MB | CPU cores: server / bench / others |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, p in r.get("phases", {}).items():
        s, w, c, rs = p["search_ms"], p["writes"], p.get("cpu_cores", {}), p.get("rss_mb", {})
        errs = "; ".join(
            f"{k}: " + ", ".join(f"{st}×{n}" for st, n in e.items()) for k, e in p["errors"].items()
        )
        lines.append(
            f"| {name} | {_fmt(p['seconds'])} | {p['readers']} / {p['writers']} | {s.get('n', 0):,} | "
            f"{_fmt(s.get('p50'))} / {_fmt(s.get('p95'))} / {_fmt(s.get('p99'))} / {_fmt(s.get('max'))} | "
            f"{w['requests']:,} | {_fmt(w['passages_per_s'])} | {_fmt(w['articles_per_s'], 2)} | {errs or '0'} | "
            f"{p['errors_5xx']} | {_fmt(rs.get('start'), 0)} → {_fmt(rs.get('end'), 0)} | "
            f"{_fmt(c.get('server'), 2)} / {_fmt(c.get('bench_clients'), 2)} / {_fmt(c.get('other_processes'), 2)} |"
        )
    lines += [
        "",
        "Latency: client-side, `POST /v1/search` (hybrid, top 5), successful requests, attributed to the phase in "
        "which they started. Throughput: passages and articles the API acknowledged as created or updated, per "
        "second of the phase. CPU: cores kept busy on average (others: processes outside this benchmark).",
        "",
    ]
    ri = r.get("reindex")
    if ri:
        lines += [
            f"Reindex: job {ri.get('status')} after {_fmt(ri.get('seconds'))} s ({ri.get('message') or ''})"
            + (f"; error: {ri['error']}" if ri.get("error") else "")
            + ".",
            "",
        ]
    hu = r.get("huge_article")
    if hu:
        lines += [
            "## Huge article",
            "",
            "| article | why | characters | bytes | status | passages | seconds | searches overlapping | "
            "their p50 / p95 / max ms |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for a in hu["attempts"]:
            o = a.get("overlapping_search_ms", {})
            lines.append(
                f"| {a['id']} | {a['why']} | {a['chars']:,} | {a['bytes']:,} | {a['status']} | {_fmt(a.get('passages'))} | "
                f"{_fmt(a['seconds'], 2)} | {a.get('overlapping_searches')} | {_fmt(o.get('p50'))} / {_fmt(o.get('p95'))} / "
                f"{_fmt(o.get('max'))} |"
            )
        refused = [a for a in hu["attempts"] if a.get("error")]
        lines += [""]
        if refused:
            lines += [f"Refusal: `{refused[0]['error'][:300]}`", ""]
        lines += [
            f"Worst search overlapping a huge write: {_fmt(hu.get('worst_overlapping_ms'))} ms; minus the idle p50 "
            f"({_fmt(hu.get('idle_p50_ms'))} ms): {_fmt(hu.get('worst_delay_ms'))} ms.",
            "",
        ]
    ms = r.get("memory_soak")
    if ms:
        lines += [
            "## Memory soak",
            "",
            f"Server RSS: {_fmt(ms.get('rss_start_mb'))} MB at the start, {_fmt(ms.get('rss_after_warmup_mb'))} MB after "
            f"the {_fmt(ms.get('warmup_s'), 0)} s warm-up, {_fmt(ms.get('rss_end_mb'))} MB at the end (max "
            f"{_fmt(ms.get('rss_max_mb'))}): growth {_fmt(ms.get('growth_after_warmup_mb'))} MB, linear fit "
            f"{_fmt(ms.get('slope_mb_per_min'), 2)} MB/min after warm-up ({ms.get('samples')} samples, one a second).",
            "",
        ]
    vf = r.get("verify")
    if vf:
        st = vf.get("stats") or {}
        lines += [
            "## Verify",
            "",
            f"Acknowledged live articles checked: {vf.get('checked', 0)} — ok {vf.get('ok', 0)}, lost {vf.get('lost', 0)}, "
            f"stale {vf.get('stale', 0)}, partial {vf.get('partial', 0)}. Deleted: {vf.get('deleted_checked', 0)} checked, "
            f"{vf.get('deleted_ok', 0)} are 404, {vf.get('resurrected', 0)} still served. Uncertain (no answer to the "
            f"write): {vf.get('uncertain_checked', 0)}, {vf.get('uncertain_bad', 0)} in neither state. Stats: "
            f"{st.get('articles')} articles (expected {vf.get('expected_articles_at_least')}"
            f"–{vf.get('expected_articles_at_most')}), {st.get('passages')} passages, {st.get('index_vectors')} vectors "
            f"(consistent: {vf.get('stats_consistent')}). Title searches restricted to the article: "
            f"{vf.get('title_found', 0)}/{vf.get('title_searches', 0)} found it.",
            "",
        ]
        if vf.get("problems"):
            lines += ["Problems: " + "; ".join(vf["problems"][:10]), ""]
    tg = r.get("targets")
    if tg:
        lines += ["## Targets", "", "| target | measured | goal | result |", "|---|---|---|---|"]
        for t in tg:
            lines.append(
                f"| {t['target']} | {_fmt(t['value'], 2)} | {t['goal']} | {'MET' if t['met'] else 'MISSED'}"
                f"{' (' + t['note'] + ')' if t['note'] else ''} |"
            )
        lines.append("")
    return "\n".join(lines)


PHASE_COLOURS = {
    "warmup": "#dddddd",
    "idle": "#cfe8cf",
    "writes_alone": "#f6dcc0",
    "mixed": "#f4c7c3",
    "reindex": "#d8cff0",
    "huge_article": "#c6def1",
    "memory_soak": "#f3ecb8",
    "verify": "#e8e8e8",
}


def _segments(rows: list[list[Any]], phases: list[dict[str, Any]]) -> tuple[Any, list[Any]]:
    """Times and the p50/p95/p99/max columns of per-second rows, NaN-separated so that no line crosses
    a phase boundary or a gap of over 10 s without answers."""

    def phase_of(t: float) -> int:
        return next((i for i, p in enumerate(phases) if p["start"] <= t <= p["end"] + 1), -1)

    t_out: list[float] = []
    cols: list[list[float]] = [[], [], [], []]
    prev_t, prev_phase = None, None
    for row in rows:
        t = row[0] + 0.5
        ph = phase_of(row[0])
        if prev_t is not None and (t - prev_t > 10 or ph != prev_phase):
            t_out.append(np.nan)
            for c in cols:
                c.append(np.nan)
        t_out.append(t)
        for c, v in zip(cols, row[2:6], strict=True):
            c.append(np.nan if v is None else float(v))
        prev_t, prev_phase = t, ph
    return np.asarray(t_out), [np.asarray(c) for c in cols]


def render_png(r: dict[str, Any], path: Path) -> None:
    """Two panels sharing time: per-second search latency (log) and server RSS, phases shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tl = r["timeline"]
    fig, (ax1, ax2) = plt.subplots(2, 1, sharex=True, figsize=(10, 6), dpi=110, height_ratios=(3, 2))
    for i, (name, p) in enumerate(r.get("phases", {}).items()):
        for ax in (ax1, ax2):
            ax.axvspan(p["start"], p["end"], color=PHASE_COLOURS.get(name, "#eeeeee"), alpha=0.7, lw=0)
        ax1.text(
            (p["start"] + p["end"]) / 2,
            0.985 if i % 2 == 0 else 0.915,
            name.replace("_", " "),
            transform=ax1.get_xaxis_transform(),
            ha="center",
            va="top",
            fontsize=7,
        )
    for a in _get(r, "huge_article", "attempts") or []:
        ax1.axvspan(a["t0"], a["t1"], ymax=0.06, color="#1f4e79", lw=0)
    rows = [row for row in tl["search_per_second"]["rows"] if row[2] is not None]
    if rows:
        t, cols = _segments(rows, list(r.get("phases", {}).values()))
        ax1.plot(t, cols[3], ".", ms=2.5, color="#7f7f7f", label="max")
        ax1.plot(t, cols[2], lw=0.8, color="#c0392b", label="p99")
        ax1.plot(t, cols[1], lw=0.8, color="#e67e22", label="p95")
        ax1.plot(t, cols[0], lw=1.0, color="#1f77b4", marker=".", ms=2, label="p50")
    ax1.axhline(LIMIT_MS, ls="--", lw=0.8, color="#c0392b")
    ax1.text(
        0.998,
        LIMIT_MS,
        f"{LIMIT_MS:.0f} ms",
        transform=ax1.get_yaxis_transform(),
        fontsize=7,
        ha="right",
        va="bottom",
    )
    ax1.set_yscale("log")
    ax1.set_ylabel("search latency, ms\n(requests ending in each second)")
    fig.legend(*ax1.get_legend_handles_labels(), loc="upper right", fontsize=7, ncol=4, frameon=False)
    rss = tl["rss"]["rows"]
    if rss:
        ax2.plot([x[0] for x in rss], [x[1] if x[1] > 0 else np.nan for x in rss], lw=1, color="#2c3e50")
    warm = _get(r, "memory_soak", "warmup_end_t")
    if warm is not None:
        ax2.axvline(warm, ls=":", lw=0.8, color="#555555")
    ax2.set_ylabel("server RSS, MB")
    ax2.set_xlabel("seconds since the server was ready (dark bars: huge-article posts)")
    m = r.get("machine", {})
    fig.suptitle(
        f"citesearch soak ({r.get('plan', {}).get('name')}): {m.get('cores')} cores, {m.get('cpu')}, {m.get('date')}",
        fontsize=9,
        x=0.01,
        ha="left",
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_outputs(r: dict[str, Any], out: Path, md: Path, png: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(r, indent=1, ensure_ascii=False, default=str) + "\n")
    md.write_text(render_md(r) + "\n")
    try:
        render_png(r, png)
    except ImportError as exc:
        log(f"no figure ({exc}): pip install -c constraints.txt -e '.[bench]'")


# ---- server -------------------------------------------------------------------------------------
def _die_with_parent() -> None:
    """In the child: receive SIGTERM when this benchmark dies, so no server outlives it."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@contextlib.contextmanager
def start_server(
    data_dir: Path, port: int, log_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], float]]:
    """`python -m citesearch.api.cli serve` from the repository root (this checkout's code); always stopped."""
    cmd = [sys.executable, "-m", "citesearch.api.cli", "serve", "--data-dir", str(data_dir)]
    cmd += ["--host", "127.0.0.1", "--port", str(port)]
    with log_path.open("wb") as fh:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
        )
        try:
            yield proc, _wait_ready(proc, port, t0, log_path)
        finally:
            _stop(proc)


# ---- main ---------------------------------------------------------------------------------------
def run(plan: Plan, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    rnd = random.Random(args.seed)
    docs = load_corpus()
    rnd.shuffle(docs)
    all_docs = list(docs)
    if plan.corpus_limit:
        docs = docs[: plan.corpus_limit]
    base, rest = docs[: plan.base_articles], docs[plan.base_articles :]
    port = args.port or free_port()
    mach = machine()
    mach["amx"] = amx()
    results: dict[str, Any] = {
        "plan": asdict(plan),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": mach,
        "corpus": {"articles": len(docs), "base": len(base), "source": str(EVAL / "corpus.jsonl")},
    }
    log(f"plan {plan.name}: {len(docs)} articles ({len(base)} base), server on port {port}")
    with start_server(tmp / "data", port, tmp / "server.log") as (proc, ready_s):
        soak = Soak(plan, args, proc, port)
        results["server"] = {"ready_s": round(ready_s, 2), "port": port, "pid": proc.pid}
        soak.questions = load_questions(rnd, plan.questions_per_language)
        soak.writers = [
            Writer(i, rest[i :: max(args.writers, 1)], args.seed * 100 + i) for i in range(args.writers)
        ]
        sampler = threading.Thread(target=soak.sampler, name="rss", daemon=True)
        sampler.start()
        readers = args.readers
        try:
            soak.phase_warmup(base)
            soak.phase_timed("idle", plan.idle_s, readers, [])
            if soak.writers:
                soak.phase_timed("writes_alone", plan.writes_s, 0, soak.writers)
                soak.phase_timed("mixed", plan.mixed_s, readers, soak.writers)
            soak.phase_reindex(readers, soak.writers[:1])
            soak.phase_huge(readers, all_docs)
            if soak.writers:
                soak.phase_timed("memory_soak", args.soak_seconds, 1, soak.writers)
            soak.phase_verify()
        except Exception as exc:  # keep what was measured: the report says where and why it stopped
            results["aborted"] = f"{type(exc).__name__}: {exc} (in phase {soak.last_phase})"
            results["traceback"] = traceback.format_exc()[-4000:]
            results["server_log_tail"] = _log_tail(tmp / "server.log")
            log(f"aborted: {results['aborted']}")
        finally:
            soak.stop_sampler.set()
            sampler.join(timeout=5)
        results["server"]["exit_code_before_stop"] = proc.poll()
    results["phases"] = {p["name"]: phase_report(soak, p) for p in soak.phases}
    results["reindex"] = soak.results.get("reindex")
    results["huge_article"] = huge_report(soak, _get(results["phases"], "idle", "search_ms", "p50"))
    mem = next((p for p in soak.phases if p["name"] == "memory_soak"), None)
    results["memory_soak"] = memory_report(soak, mem, min(plan.soak_warmup_s, args.soak_seconds / 2))
    results["verify"] = soak.results.get("verify")
    results["writers"] = [
        {
            "writer": w.idx,
            "slice": len(w.docs),
            "live": len(w.live),
            "deleted": len(w.deleted),
            "never_written": len(w.pending),
            "uncertain": len(w.uncertain),
            "ops": dict(w.ops),
            "anomalies": w.anomalies[:20],
        }
        for w in soak.writers
    ]
    results["requests"] = len(soak.samples)
    results["timeline"] = timeline(soak)
    results["targets"] = evaluate_targets(results)
    return results


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short phases and a smaller corpus (a few minutes)")
    ap.add_argument("--soak-seconds", type=float, default=None, help="memory soak length (600; quick: 60)")
    ap.add_argument("--readers", type=int, default=4, help="reader threads (idle, mixed, reindex, huge)")
    ap.add_argument(
        "--writers", type=int, default=2, help="writer threads (writes_alone, mixed, memory soak)"
    )
    ap.add_argument("--port", type=int, default=0, help="server port (default: a free one)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep-data", action="store_true", help="keep the temporary data dir and server log")
    ap.add_argument(
        "--render",
        action="store_true",
        help="only re-evaluate the targets and redraw the markdown and figure from the JSON",
    )
    args = ap.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.soak_seconds is None:
        args.soak_seconds = plan.soak_s
    if args.readers < 1 or args.writers < 0 or args.soak_seconds <= 0:
        ap.error("need --readers >= 1, --writers >= 0 and --soak-seconds > 0")
    stem = "soak-quick" if args.quick else "soak"
    out, md, png = (RESULTS / f"{stem}.{ext}" for ext in ("json", "md", "png"))
    if args.render:
        r = json.loads(out.read_text())
        r["targets"] = evaluate_targets(r)
        write_outputs(r, out, md, png)
        print(render_md(r))
        return dict(r)

    def on_term(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="citesearch-soak-"))
    try:
        r = run(plan, args, tmp)
    finally:
        if args.keep_data:
            log(f"kept {tmp} (data/ and server.log)")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    r["seconds"] = round(time.perf_counter() - t0, 1)
    r["out_name"], r["png_name"] = out.name, png.name
    write_outputs(r, out, md, png)
    print(render_md(r))
    for t in r["targets"]:
        print(
            f"{'MET   ' if t['met'] else 'MISSED'}  {t['target']}: {_fmt(t['value'], 2)} (goal {t['goal']})"
        )
    log(f"done in {r['seconds']:.0f}s: {out}, {md}, {png} ({out.stat().st_size / 1024:.0f} kB)")
    return r


if __name__ == "__main__":
    main()
