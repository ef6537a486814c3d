"""Latency of `POST /v1/search` and `POST /v1/answer` over HTTP, with the answer model and without.

A real `citesearch serve` (bench.perf.serve) on one data directory: the 48 XQuAD articles in four
languages (en, de, zh, ar: about 1,000 passages), then `--questions` XQuAD questions in their own
languages (the same sample every run), each asked `--rounds` times (the first is warm-up), one at a
time. Two servers, one after the other on the same data:
- `off`: `CITESEARCH_ANSWER_MODEL=off` (highlights by cosine alone, as before the answer model);
- `on`: the defaults (the model reads the first search hit; an answer reads the first 2).
Prints one JSON line per server and writes bench/results/answer-latency.json.

Run: `.venv/bin/python -m bench.answer_latency [--questions N] [--rounds R]`.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.perf import machine, serve

ROOT = Path(__file__).resolve().parent.parent
EVAL = ROOT.parent / "shared" / "eval" / "xquad"
LANGS = ("en", "de", "zh", "ar")


def _load(name: str) -> list[dict[str, Any]]:
    with (EVAL / name).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _post(port: int, path: str, body: dict[str, Any]) -> tuple[dict[str, Any], float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        t0 = time.perf_counter()
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = json.loads(resp.read())
        ms = (time.perf_counter() - t0) * 1000
    finally:
        conn.close()
    if resp.status != 200:
        raise RuntimeError(f"{path}: {resp.status} {data}")
    return data, ms


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--questions", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "answer-latency.json")
    args = ap.parse_args()
    corpus = [a for a in _load("corpus.jsonl") if a["language"] in LANGS]
    queries = [q for q in _load("queries.jsonl") if q["language"] in LANGS]
    sample = random.Random(1).sample(queries, args.questions)
    docs = [
        {
            "id": a["id"].replace("/", "-"),
            "title": f"Article {i}",
            "text": a["text"],
            "language": a["language"],
        }
        for i, a in enumerate(corpus)
    ]
    runs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "d"
        for name, env in (("off", {"CITESEARCH_ANSWER_MODEL": "off"}), ("on", {})):
            saved = dict(os.environ)
            os.environ.update(env)
            try:
                with serve(data, Path(tmp) / f"{name}.log") as srv:
                    if name == "off":
                        for i in range(0, len(docs), 16):
                            _post(srv.port, "/v1/articles", {"articles": docs[i : i + 16]})
                    stats: dict[str, list[float]] = {"search": [], "answer": []}
                    answered = 0
                    for r in range(args.rounds):
                        for q in sample:
                            _, s_ms = _post(srv.port, "/v1/search", {"query": q["question"]})
                            a, a_ms = _post(srv.port, "/v1/answer", {"query": q["question"]})
                            if r:
                                stats["search"].append(s_ms)
                                stats["answer"].append(a_ms)
                                answered += bool(a["answered"])
                    passages = json.loads(_get(srv.port, "/v1/stats"))["passages"]
            finally:
                os.environ.clear()
                os.environ.update(saved)
            runs[name] = {
                "passages": passages,
                "search_p50_ms": round(statistics.median(stats["search"]), 1),
                "search_p90_ms": round(statistics.quantiles(stats["search"], n=10)[-1], 1),
                "answer_p50_ms": round(statistics.median(stats["answer"]), 1),
                "answer_p90_ms": round(statistics.quantiles(stats["answer"], n=10)[-1], 1),
                "answered": f"{answered}/{len(stats['answer'])}",
                "load_average": [round(x, 2) for x in os.getloadavg()],
            }
            print(json.dumps({name: runs[name]}), flush=True)
    out = {"machine": machine(), "questions": args.questions, "rounds": args.rounds, "runs": runs}
    args.out.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")


def _get(port: int, path: str) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", path)
        return conn.getresponse().read().decode()
    finally:
        conn.close()


if __name__ == "__main__":
    main()
