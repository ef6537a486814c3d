"""Calibrates the extractive answer's threshold (api/answer.py MIN_SENTENCE_SCORE) on XQuAD.

Half the English articles are indexed. Questions about them (answerable) and about the other half
(unanswerable: their article is not there) are asked in several languages through the real answer
retrieval (`api.answer.retrieve`: semantic highlights, each with its stored sentence vector's
cosine with the question). For each question we keep the top passage's sentence score (which decides whether
there is an answer, api/answer.py `pick`) and whether the sentences an answer would quote cover
the answer span. The table gives, per threshold, the share of
answerable questions answered, the share of those whose quoted sentences hold the answer, and
the share of unanswerable questions that would get an answer anyway (noise quoted).

Run: `.venv/bin/python -m bench.answer_threshold [--per-lang N]`; writes
bench/results/answer_threshold.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from citesearch.api import answer
from citesearch.api.schemas import AnswerRequest
from citesearch.embeddings import load_embedder
from citesearch.index.articles import ArticleInput
from citesearch.index.service import IndexConfig, SearchService

ROOT = Path(__file__).resolve().parent.parent
EVAL = ROOT.parent / "shared" / "eval" / "xquad"
LANGS = ["en", "de", "zh", "ru", "es", "ar"]
THRESHOLDS = [0.74, 0.76, 0.77, 0.78, 0.79, 0.80, 0.81, 0.82, 0.83, 0.84, 0.86]


def _load(name: str) -> list[dict[str, Any]]:
    with (EVAL / name).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _covered(r: answer.Retrieved, threshold: float, gold: tuple[str, int, int]) -> bool:
    """Whether the sentences quoted at this threshold include the gold answer span."""
    saved = answer.MIN_SENTENCE_SCORE
    answer.MIN_SENTENCE_SCORE = threshold
    try:
        picked = answer.pick(r.outcome.hits, r.scores)
    finally:
        answer.MIN_SENTENCE_SCORE = saved
    art, s, e = gold
    return any(
        r.outcome.hits[i].passage.article_id == art
        and r.outcome.hits[i].highlight.char_start <= s
        and e <= r.outcome.hits[i].highlight.char_end
        for i in picked
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-lang", type=int, default=25, help="questions per language and class")
    args = ap.parse_args()
    corpus = [a for a in _load("corpus.jsonl") if a["language"] == "en"]
    titles = sorted(a["title"] for a in corpus)
    indexed = set(titles[::2])
    queries = _load("queries.jsonl")
    by_qid_en = {q["qid"]: q for q in queries if q["language"] == "en"}
    title_by_id = {a["id"]: a["title"] for a in corpus}
    title_of = {qid: title_by_id[q["gold_article_id"]] for qid, q in by_qid_en.items()}
    rnd = random.Random(0)
    embedder = load_embedder()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        service = SearchService(IndexConfig(data_dir=Path(tmp)), embedder)
        try:
            service.upsert(
                [
                    ArticleInput(id=f"a{i}", title=f"Article {i}", text=a["text"], language="en")
                    for i, a in enumerate(corpus)
                    if a["title"] in indexed
                ]
            )
            ids = {a["title"]: f"a{i}" for i, a in enumerate(corpus)}
            t0 = time.perf_counter()
            for lang in LANGS:
                pool = [q for q in queries if q["language"] == lang]
                for answerable in (True, False):
                    cands = [q for q in pool if (title_of[q["qid"]] in indexed) == answerable]
                    for q in rnd.sample(cands, min(args.per_lang, len(cands))):
                        en = by_qid_en[q["qid"]]
                        title = title_of[q["qid"]]
                        r = answer.retrieve(service, AnswerRequest(query=q["question"]))
                        gold = (ids[title], *en["answer_span"])
                        rows.append(
                            {
                                "lang": lang,
                                "answerable": answerable,
                                "best": r.scores[0] if r.scores else 0.0,
                                "covered": {t: _covered(r, t, gold) for t in THRESHOLDS},
                            }
                        )
            elapsed = time.perf_counter() - t0
        finally:
            service.close()
    _report(rows, elapsed)


def _report(rows: list[dict[str, Any]], elapsed: float) -> None:
    pos = [r for r in rows if r["answerable"]]
    neg = [r for r in rows if not r["answerable"]]
    lines = [
        "# Extractive answer threshold (bench/answer_threshold.py)",
        "",
        f"XQuAD, half the English articles indexed; {len(pos)} answerable and {len(neg)} unanswerable "
        f"questions in {', '.join(LANGS)}; {elapsed:.0f} s of retrieval; load average "
        f"{os.getloadavg()[0]:.2f}.",
        "",
        "| threshold | answerable: answered | answered: quoted sentence holds the answer | "
        "unanswerable: answered anyway |",
        "|---|---|---|---|",
    ]
    for t in THRESHOLDS:
        answered = [r for r in pos if r["best"] >= t]
        held = sum(r["covered"][t] for r in answered)
        noise = sum(r["best"] >= t for r in neg)
        lines.append(
            f"| {t:.2f} | {len(answered) / max(len(pos), 1):.1%} | {held / max(len(answered), 1):.1%} "
            f"| {noise / max(len(neg), 1):.1%} |"
        )
    lines += [
        "",
        "Per language at the chosen threshold:",
        "",
        "| lang | answered | holds answer | noise |",
        "|---|---|---|---|",
    ]
    t = answer.MIN_SENTENCE_SCORE
    for lang in LANGS:
        p = [r for r in pos if r["lang"] == lang]
        n = [r for r in neg if r["lang"] == lang]
        a = [r for r in p if r["best"] >= t]
        lines.append(
            f"| {lang} | {len(a)}/{len(p)} | {sum(r['covered'][t] for r in a)}/{len(a)} "
            f"| {sum(r['best'] >= t for r in n)}/{len(n)} |"
        )
    text = "\n".join(lines) + "\n"
    out = ROOT / "bench" / "results" / "answer_threshold.md"
    out.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
