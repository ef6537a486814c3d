"""Recall of the approximate index on REAL vectors, through the real search code.

The scale section of bench/perf.py times FAISS on synthetic vectors, whose near-ties (noisy copies
of one vector, or a Gaussian with no topics) make recall there meaningless. Here both indexes hold
the real XQuAD passage vectors (3,726 passages, 12 languages) and answer real questions through
`SearchService.search` in dense mode with fairness on: recall@10 is the share of the exact index's top 10
that the HNSW index also returns. Deletes: every article in some question's top 3 is deleted
from the HNSW service and none of its passages may come back.

Run: `.venv/bin/python -m bench.hnsw_recall [--questions N]`; needs ../shared/eval and uses the
embedding cache of bench/quality.py. Writes bench/results/hnsw_recall.json.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench.quality import ROOT, CachingEmbedder, load
from citesearch.embeddings import load_embedder
from citesearch.index.articles import ArticleInput
from citesearch.index.search import SearchQuery
from citesearch.index.service import IndexConfig, SearchService


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--questions", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "hnsw_recall.json")
    args = ap.parse_args(argv)
    docs, questions = load()
    cache = Path.home() / ".cache" / "citesearch" / "quality-embeddings.npz"
    emb = CachingEmbedder(load_embedder(), cache)
    inputs = [
        ArticleInput(id=d.id.replace("/", "-"), title=d.title, text=d.text, language=d.language)
        for d in docs.values()
    ]
    qs = random.Random(0).sample(questions, min(args.questions, len(questions)))
    qvecs = emb.encode_queries([q.text for q in qs])
    emb.save()
    services: dict[str, SearchService] = {}
    build_s: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("flat", "hnsw"):
            svc = SearchService(IndexConfig(data_dir=Path(tmp) / kind, index_kind=kind), emb)
            t0 = time.perf_counter()
            for i in range(0, len(inputs), 64):
                svc.upsert(inputs[i : i + 64])
            build_s[kind] = time.perf_counter() - t0
            services[kind] = svc
        recalls: list[float] = []
        times: dict[str, list[float]] = {"flat": [], "hnsw": []}
        tops: list[list[str]] = []
        for q, v in zip(qs, qvecs, strict=True):
            got: dict[str, list[int]] = {}
            for kind, svc in services.items():
                t0 = time.perf_counter()
                out = svc.search(SearchQuery(text=q.text, top_k=10, mode="dense", per_article=10), v)
                times[kind].append(time.perf_counter() - t0)
                got[kind] = [h.passage.id for h in out.hits]
                if kind == "hnsw":
                    tops.append([h.passage.article_id for h in out.hits[:3]])
            if got["flat"]:
                recalls.append(len(set(got["flat"]) & set(got["hnsw"])) / len(got["flat"]))
        hnsw = services["hnsw"]
        doomed = sorted({a for top in tops[:200] for a in top})
        for article_id in doomed:
            hnsw.delete(article_id)
        back = 0
        for q, v in zip(qs[:200], qvecs[:200], strict=True):
            out = hnsw.search(SearchQuery(text=q.text, top_k=10, mode="dense", per_article=10), v)
            back += sum(1 for h in out.hits if h.passage.article_id in set(doomed))
        kinds = {k: s.stats().index_kind for k, s in services.items()}
        n_passages = services["flat"].stats().passages
        for s in services.values():
            s.close()
    result = {
        "data": "real XQuAD passage and question vectors (multilingual-e5-small), 12 languages",
        "passages": n_passages,
        "questions": len(qs),
        "index_kinds": kinds,
        "recall_at_10": round(statistics.mean(recalls), 4),
        "recall_at_10_min": round(min(recalls), 4),
        "share_with_full_recall": round(float(np.mean([r == 1.0 for r in recalls])), 4),
        "search_p50_ms": {k: round(statistics.median(t) * 1000, 2) for k, t in times.items()},
        "ingest_s": {k: round(s, 1) for k, s in build_s.items()},
        "deleted_articles": len(doomed),
        "deleted_passages_returned": back,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
