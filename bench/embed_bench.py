"""Embedding speed and quality per precision (fp32, bf16, int8) on XQuAD text (../shared/eval/xquad).

Measures passages/s (a few hundred real passages of about 100 tokens), single-query latency
p50/p95 (200 short questions), agreement with fp32 (cosine) and cross-lingual retrieval
(questions in 11 languages against the English paragraphs, and English questions against the
Chinese ones; paragraph = passage, exact cosine, MRR@10 and Recall@1).

Run: `.venv/bin/python -m bench.embed_bench [--precisions fp32,bf16,int8] [--batch-sizes 8,16,32,64]`.
Writes bench/results/embed.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from citesearch.embeddings import Embedder, load_embedder
from citesearch.embeddings.embedder import PRECISIONS, default_precision

ROOT = Path(__file__).resolve().parent.parent
EVAL = ROOT.parent / "shared" / "eval" / "xquad"
RESULTS = ROOT / "bench" / "results" / "embed.json"
LANGS = ["ar", "de", "el", "en", "es", "hi", "ro", "ru", "th", "tr", "vi", "zh"]
SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s*")

Json = dict[str, Any]


def load_jsonl(path: Path) -> list[Json]:
    """All records of a JSON-lines file."""
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def paragraphs(corpus: list[Json]) -> dict[str, str]:
    """Paragraph id -> paragraph text, for every language."""
    out: dict[str, str] = {}
    for doc in corpus:
        for p in doc["paragraphs"]:
            out[p["id"]] = doc["text"][p["start"] : p["end"]].strip()
    return out


def make_passages(emb: Embedder, paras: dict[str, str], n: int, target: int) -> list[str]:
    """About ``n`` passages of roughly ``target`` tokens: leading sentences of paragraphs, all languages in turn."""
    by_lang: dict[str, list[str]] = {lang: [] for lang in LANGS}
    for pid, text in paras.items():
        by_lang[pid.split("/")[1]].append(text)
    out: list[str] = []
    i = 0
    while len(out) < n:
        for lang in LANGS:
            text = by_lang[lang][i % len(by_lang[lang])]
            sents = [s for s in SENTENCE_END.split(text) if s]
            passage = ""
            for s in sents:
                candidate = f"{passage} {s}".strip()
                if passage and emb.count_tokens(candidate) > target * 1.3:
                    break
                passage = candidate
                if emb.count_tokens(passage) >= target:
                    break
            out.append(passage)
        i += 1
    return out[:n]


def short_questions(queries: list[Json], n: int) -> list[str]:
    """``n`` short questions, all languages in turn, in a fixed random order."""
    rnd = random.Random(0)
    by_lang: dict[str, list[str]] = {lang: [] for lang in LANGS}
    for q in queries:
        by_lang[q["language"]].append(q["question"])
    for qs in by_lang.values():
        rnd.shuffle(qs)
    return [by_lang[LANGS[i % len(LANGS)]][i // len(LANGS)] for i in range(n)]


def throughput(emb: Embedder, passages: list[str], batch_size: int) -> float:
    """Passages per second for one encode_passages call over all passages."""
    emb.batch_size = batch_size
    t = time.perf_counter()
    emb.encode_passages(passages)
    return len(passages) / (time.perf_counter() - t)


def percentile(values: list[float], q: int) -> float:
    """The q-th percentile (1..99) of values."""
    return statistics.quantiles(values, n=100)[q - 1]


def crosslingual(
    emb: Embedder, paras: dict[str, str], queries: list[Json], per_lang: int
) -> tuple[Json, npt.NDArray[np.float32]]:
    """MRR@10 and R@1 for L->en (11 languages) and en->zh, paragraph = passage; also returns all vectors."""
    rnd = random.Random(1)
    qids = sorted({q["qid"] for q in queries})
    rnd.shuffle(qids)
    chosen = set(qids[:per_lang])
    targets = {
        "en": [p for p in paras if p.split("/")[1] == "en"],
        "zh": [p for p in paras if p.split("/")[1] == "zh"],
    }
    pvec = {t: emb.encode_passages([paras[p] for p in ids]) for t, ids in targets.items()}
    asked = [q for q in queries if q["qid"] in chosen]
    qvec = emb.encode_queries([q["question"] for q in asked])
    scores: dict[str, list[float]] = {}
    hits1: dict[str, list[float]] = {}
    for q, v in zip(asked, qvec, strict=True):
        target = "zh" if q["language"] == "en" else "en"
        gold = q["gold_paragraph_id"].replace(f"/{q['language']}/", f"/{target}/", 1)
        ranked = np.argsort(-(pvec[target] @ v))[:10]
        ids = [targets[target][i] for i in ranked]
        rank = ids.index(gold) + 1 if gold in ids else 0
        key = f"{q['language']}->{target}"
        scores.setdefault(key, []).append(1.0 / rank if rank else 0.0)
        hits1.setdefault(key, []).append(1.0 if rank == 1 else 0.0)
    per = {k: round(100 * statistics.fmean(v), 2) for k, v in sorted(scores.items())}
    out: Json = {
        "questions": len(asked),
        "mrr10_mean": round(statistics.fmean(per.values()), 2),
        "r1_mean": round(100 * statistics.fmean(statistics.fmean(v) for v in hits1.values()), 2),
        "mrr10_per_pair": per,
    }
    return out, np.concatenate([pvec["en"], pvec["zh"], qvec])


def load(precision: str, batch_size: int) -> tuple[Embedder, float]:
    """A fresh default Embedder at ``precision`` and its load time in seconds."""
    t = time.perf_counter()
    emb = load_embedder(precision=precision, batch_size=batch_size)
    return emb, time.perf_counter() - t


def main() -> None:
    """Run the benchmark and write bench/results/embed.json.

    All precisions are loaded side by side and measured in alternation (best of ``--rounds`` for
    throughput, query by query for latency), so load from other processes hits them alike.
    """
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--precisions", default=",".join(PRECISIONS))
    ap.add_argument("--batch-sizes", default="8,32")
    ap.add_argument("--batch-size", type=int, default=32, help="for latency and the quality check")
    ap.add_argument("--passages", type=int, default=256)
    ap.add_argument("--target-tokens", type=int, default=100)
    ap.add_argument("--questions", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3, help="throughput runs per setting; the best counts")
    ap.add_argument("--per-lang", type=int, default=40, help="qids asked in every language (quality check)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()

    corpus, queries = load_jsonl(EVAL / "corpus.jsonl"), load_jsonl(EVAL / "queries.jsonl")
    paras = paragraphs(corpus)
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    loads = [os.getloadavg()[0]]
    models: dict[str, Embedder] = {}
    rows: dict[str, Json] = {}
    for precision in precisions:
        models[precision], load_s = load(precision, args.batch_size)
        rows[precision] = {"load_s": round(load_s, 2)}
    first = models[precisions[0]]
    passages = make_passages(first, paras, args.passages, args.target_tokens)
    questions = short_questions(queries, args.questions)
    for emb in models.values():  # warm-up
        emb.encode_passages(passages[:32])
        emb.encode_queries(questions[:10])

    best: dict[tuple[str, int], float] = {}
    for r in range(args.rounds):
        for k in range(len(precisions)):
            precision = precisions[(k + r) % len(precisions)]
            for b in sizes:
                rate = throughput(models[precision], passages, b)
                best[precision, b] = max(best.get((precision, b), 0.0), rate)
        loads.append(os.getloadavg()[0])
    times: dict[str, list[float]] = {p: [] for p in precisions}
    for i, q in enumerate(questions):
        for k in range(len(precisions)):
            precision = precisions[(k + i) % len(precisions)]
            t = time.perf_counter()
            models[precision].encode_queries([q])
            times[precision].append((time.perf_counter() - t) * 1000)
    loads.append(os.getloadavg()[0])

    reference: npt.NDArray[np.float32] | None = None
    for precision in precisions:
        emb = models[precision]
        emb.batch_size = args.batch_size
        row = rows[precision]
        row["passages_per_s"] = {str(b): round(best[precision, b], 1) for b in sizes}
        row["query_ms_p50"] = round(percentile(times[precision], 50), 1)
        row["query_ms_p95"] = round(percentile(times[precision], 95), 1)
        quality, vecs = crosslingual(emb, paras, queries, args.per_lang)
        row["crosslingual"] = quality
        if reference is None:
            reference = vecs
        cos = (vecs * reference).sum(axis=1)
        row["cosine_vs_first"] = {
            "min": round(float(cos.min()), 5),
            "median": round(float(np.median(cos)), 5),
        }
        print(f"{precision}: {json.dumps(row)}", flush=True)
    loads.append(os.getloadavg()[0])

    results: Json = {
        "machine": {
            "cpus": len(os.sched_getaffinity(0)),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "loadavg_1min_during_run": [round(x, 2) for x in loads],
        },
        "passages": {
            "n": len(passages),
            "mean_tokens": round(statistics.fmean(first.count_tokens_batch(passages)), 1),
        },
        "questions": {
            "n": len(questions),
            "mean_tokens": round(statistics.fmean(first.count_tokens_batch(questions)), 1),
        },
        "model": first.model_id,
        "default_precision": default_precision(),
        "precisions": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print()
    print(f"passages: {results['passages']}, questions: {results['questions']}, load avg: {loads}")
    header = (
        f"{'precision':<9} {'load s':>6} {'passages/s @batch':<22} {'q p50 ms':>8} {'q p95 ms':>8} "
        f"{'MRR@10':>7} {'R@1':>6} {'cos min':>8}"
    )
    print(header)
    print("-" * len(header))
    for precision, row in rows.items():
        pps = ", ".join(f"{v}@{b}" for b, v in row["passages_per_s"].items())
        print(
            f"{precision:<9} {row['load_s']:>6} {pps:<22} {row['query_ms_p50']:>8} {row['query_ms_p95']:>8} "
            f"{row['crosslingual']['mrr10_mean']:>7} {row['crosslingual']['r1_mean']:>6} "
            f"{row['cosine_vs_first']['min']:>8}"
        )
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
