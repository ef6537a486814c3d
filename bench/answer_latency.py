"""Latency of POST /v1/answer through the real app (TestClient, lifespan on), extractive mode.

Indexes the seed and the chatbot tests' articles plus 12 XQuAD English articles, then asks
`--questions` XQuAD questions in their own languages (the same sample every run) and reports the
median and the 90th percentile of the request's wall time, with the load average. Run it from
two checkouts one after the other to compare them (`--label` names the run).

Run: `.venv/bin/python -m bench.answer_latency [--questions N] [--rounds R] [--label NAME] [--eval DIR]`;
prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from citesearch.api.app import create_app
from citesearch.api.settings import Settings
from tests.chat_support import articles

ROOT = Path(__file__).resolve().parent.parent
EVAL = ROOT.parent / "shared" / "eval" / "xquad"


def _load(name: str, where: Path) -> list[dict[str, Any]]:
    with (where / name).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--questions", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2, help="times each question is asked (first is warm-up)")
    ap.add_argument("--label", default="")
    ap.add_argument("--eval", type=Path, default=EVAL, help="the XQuAD folder (corpus.jsonl, queries.jsonl)")
    args = ap.parse_args()
    corpus = [a for a in _load("corpus.jsonl", args.eval) if a["language"] == "en"][:12]
    ids = {a["id"] for a in corpus}
    queries = _load("queries.jsonl", args.eval)
    gold = {q["qid"]: q["gold_article_id"] for q in queries if q["language"] == "en"}
    sample = random.Random(1).sample([q for q in queries if gold[q["qid"]] in ids], args.questions)
    docs = [{"id": a["id"].replace("/", ":"), "title": a["title"], "text": a["text"]} for a in corpus]
    times: list[float] = []
    answered = 0
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(Settings(data_dir=Path(tmp) / "d"))
        with TestClient(app) as c:
            r = c.post("/v1/articles", json={"articles": [*articles(), *docs]})
            assert r.status_code == 200, r.text
            for round_ in range(args.rounds):
                for q in sample:
                    t0 = time.perf_counter()
                    r = c.post("/v1/answer", json={"query": q["question"]})
                    elapsed = time.perf_counter() - t0
                    assert r.status_code == 200, r.text
                    if round_:
                        times.append(elapsed)
                        answered += r.json()["answered"]
    times.sort()
    print(
        json.dumps(
            {
                "label": args.label,
                "requests": len(times),
                "answered": answered,
                "p50_ms": round(statistics.median(times) * 1000, 1),
                "p90_ms": round(times[int(0.9 * (len(times) - 1))] * 1000, 1),
                "load_average": [round(x, 2) for x in os.getloadavg()],
                "python": sys.version.split()[0],
            }
        )
    )


if __name__ == "__main__":
    main()
