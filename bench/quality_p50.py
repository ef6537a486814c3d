"""In-process search latency on XQuAD corpora, for before/after comparisons of ranking changes.

Builds the English and Arabic monolingual corpora and the mixed corpus of seed 0 (as bench/quality.py
does, cached embeddings), then times every question of the corpus's language (all questions for
mixed) twice, with its query vector given, after 50 warm-up searches: the search's own cost, not
the model's. Run it from each checkout to compare, pinned to one core, back to back:
`taskset -c 1 python -m bench.quality_p50`.
"""

from __future__ import annotations

import random
import statistics
import time
from pathlib import Path

import numpy as np

from bench.quality import LANGS, CachingEmbedder, build, load
from citesearch.embeddings import load_embedder
from citesearch.index.search import SearchQuery


def main() -> None:
    docs, questions = load()
    emb = CachingEmbedder(load_embedder(), Path.home() / ".cache" / "citesearch" / "quality-embeddings.npz")
    titles = sorted({d.title for d in docs.values()})
    rnd = random.Random(0)
    drawn = {t: rnd.choice(LANGS) for t in titles}
    corpora = {
        "monolingual en": ([d for d in docs.values() if d.language == "en"], "en", False),
        "monolingual ar": ([d for d in docs.values() if d.language == "ar"], "ar", False),
        "mixed seed 0": ([d for d in docs.values() if drawn[d.title] == d.language], None, True),
    }
    for name, (ds, lang, neutral) in corpora.items():
        svc, _ = build(emb, ds, neutral)
        qs = [q for q in questions if lang is None or q.language == lang][:1190]
        vecs = emb.encode_queries([q.text for q in qs])
        try:
            for q, v in zip(qs[:50], vecs[:50], strict=True):
                svc.search(SearchQuery(text=q.text, top_k=10), query_vector=v)
            took: list[float] = []
            for _ in range(2):
                for q, v in zip(qs, vecs, strict=True):
                    t0 = time.perf_counter()
                    svc.search(SearchQuery(text=q.text, top_k=10), query_vector=v)
                    took.append((time.perf_counter() - t0) * 1000)
        finally:
            svc.close()
        p50, p90 = statistics.median(took), float(np.percentile(took, 90))
        print(f"{name}: p50 {p50:.2f} ms, p90 {p90:.2f} ms, {len(took)} searches")


if __name__ == "__main__":
    main()
