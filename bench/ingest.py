"""Ingest throughput and passage lengths on XQuAD's 576 articles, in-process through the real service.

Run: `.venv/bin/python -m bench.ingest`. Writes bench/results/ingest.json.
`python -m bench.ingest --sentences N`: the cost of sentence vectors instead: N articles (every
language in turn) ingested without them, then with them (a fresh data directory each, same process
and model), passages/s and stored bytes per passage; writes bench/results/ingest-sentences.json.
`python -m bench.ingest --passage-vectors N`: N articles ingested with passage vectors from the model
and pooled from their sentences (IndexConfig.passage_vectors), alternately, three times each;
writes bench/results/ingest-passage-vectors.json.
"""

from __future__ import annotations

import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from citesearch.embeddings import load_embedder
from citesearch.index.articles import ArticleInput
from citesearch.index.service import IndexConfig, SearchService

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "eval" / "xquad" / "corpus.jsonl"


def _sample(n_articles: int) -> list[ArticleInput]:
    """The first `n_articles` of the corpus, every language in turn."""
    rows = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines()]
    by_lang: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        by_lang.setdefault(r["language"], []).append(r)
    picked = [lang_rows[i] for i in range(48) for lang_rows in by_lang.values() if i < len(lang_rows)][
        :n_articles
    ]
    return [
        ArticleInput(id=r["id"].replace("/", "-"), title=r["title"], text=r["text"], language=r["language"])
        for r in picked
    ]


def passage_vector_cost(n_articles: int, rounds: int = 3) -> dict[str, object]:
    """Ingest the same articles with model and with pooled passage vectors, alternately; passages/s."""
    inputs = _sample(n_articles)
    embedder = load_embedder()
    embedder.encode_passages(["warm-up passage"])
    out: dict[str, object] = {"articles": len(inputs), "load_average_before": list(os.getloadavg())}
    rates: dict[str, list[float]] = {"model": [], "sentences": []}
    for _ in range(rounds):
        for label in ("model", "sentences"):
            with tempfile.TemporaryDirectory() as tmp:
                config = IndexConfig(data_dir=Path(tmp), passage_vectors=label)
                svc = SearchService(config, embedder)
                try:
                    t0 = time.perf_counter()
                    for i in range(0, len(inputs), 16):
                        svc.upsert(inputs[i : i + 16])
                    seconds = time.perf_counter() - t0
                    passages = svc.stats().passages
                finally:
                    svc.close()
            rates[label].append(round(passages / seconds, 1))
            out["passages"] = passages
    out["passages_per_s"] = rates
    out["median_passages_per_s"] = {k: statistics.median(v) for k, v in rates.items()}
    out["load_average_after"] = list(os.getloadavg())
    return out


def sentence_cost(n_articles: int) -> dict[str, object]:
    """Ingest the same articles without and with sentence vectors; throughput and stored bytes."""
    inputs = _sample(n_articles)
    embedder = load_embedder()
    embedder.encode_passages(["warm-up passage"])
    out: dict[str, object] = {"articles": len(inputs), "load_average_before": list(os.getloadavg())}
    for label, on in (("without", False), ("with", True)):
        with tempfile.TemporaryDirectory() as tmp:
            svc = SearchService(IndexConfig(data_dir=Path(tmp), sentence_vectors=on), embedder)
            try:
                t0 = time.perf_counter()
                for i in range(0, len(inputs), 16):
                    svc.upsert(inputs[i : i + 16])
                seconds = time.perf_counter() - t0
                stats = svc.stats()
            finally:
                svc.close()
            with sqlite3.connect(Path(tmp) / "store.sqlite") as conn:
                blob = conn.execute("SELECT coalesce(sum(length(sentences)), 0) FROM passages").fetchone()[0]
            out[label] = {
                "seconds": round(seconds, 1),
                "passages": stats.passages,
                "sentences": stats.sentences,
                "passages_per_s": round(stats.passages / seconds, 1),
                "sentence_bytes_per_passage": round(blob / stats.passages),
            }
    out["load_average_after"] = list(os.getloadavg())
    return out


def main() -> None:
    """Ingest the corpus in batches of 32 articles; report passages/s and the token-length distribution."""
    rows = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines()]
    inputs = [
        ArticleInput(id=r["id"].replace("/", "-"), title=r["title"], text=r["text"], language=r["language"])
        for r in rows
    ]
    embedder = load_embedder()
    embedder.encode_passages(["warm-up passage"])
    with tempfile.TemporaryDirectory() as tmp:
        svc = SearchService(IndexConfig(data_dir=Path(tmp)), embedder)
        try:
            t0 = time.perf_counter()
            for i in range(0, len(inputs), 32):
                svc.upsert(inputs[i : i + 32])
            seconds = time.perf_counter() - t0
            gen = svc.state.generation
            lengths = np.array(
                [p.n_tokens for a in svc.store.article_ids() for p in svc.store.article_passages(a, gen)]
            )
            t1 = time.perf_counter()
            svc.reindex()
            reindex_s = time.perf_counter() - t1
        finally:
            svc.close()
    result = {
        "articles": len(inputs),
        "passages": len(lengths),
        "seconds": round(seconds, 1),
        "passages_per_s": round(len(lengths) / seconds, 1),
        "articles_per_s": round(len(inputs) / seconds, 2),
        "reindex_seconds": round(reindex_s, 1),
        "tokens": {
            "min": int(lengths.min()),
            "p10": int(np.percentile(lengths, 10)),
            "median": int(np.median(lengths)),
            "mean": round(float(lengths.mean()), 1),
            "p90": int(np.percentile(lengths, 90)),
            "max": int(lengths.max()),
        },
        "histogram": {
            f"{lo}-{lo + 49}": int(((lengths >= lo) & (lengths < lo + 50)).sum()) for lo in range(0, 550, 50)
        },
    }
    out = ROOT / "bench" / "results" / "ingest.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--sentences":
        res = sentence_cost(int(sys.argv[2]))
        (ROOT / "bench" / "results" / "ingest-sentences.json").write_text(json.dumps(res, indent=2))
        print(json.dumps(res, indent=2))
    elif len(sys.argv) == 3 and sys.argv[1] == "--passage-vectors":
        res = passage_vector_cost(int(sys.argv[2]))
        (ROOT / "bench" / "results" / "ingest-passage-vectors.json").write_text(json.dumps(res, indent=2))
        print(json.dumps(res, indent=2))
    else:
        main()
