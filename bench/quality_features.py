"""Dump what the search knows about every passage of each question's leading articles (XQuAD), for
offline ranking experiments: simulate a rule over the dump in numpy in seconds instead of a full
`bench.quality` run in minutes.

For each question (same settings and indexes as bench/quality.py, hybrid, the API's default
candidate pools) the search runs up to sentence evidence, then every passage of the
EVIDENCE_ARTICLES leading articles is written with: fused (slot) score, dense score, BM25 and its
normaliser, dense normalisers, the passage's order in its article, its article's fused rank, each
sentence's fair and plain similarity and IDF-weighted term overlap with the question, and the
labels (right article; passage covers the answer; sentence covers the answer).

Run: `python -m bench.quality_features [--sample N] [--out FILE.npz]`.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.quality import CachingEmbedder, Doc, Question, build, load, settings
from citesearch.embeddings import load_embedder
from citesearch.index.lexical import terms
from citesearch.index.search import SearchQuery, identify, plan
from citesearch.index.service import SearchService

ROOT = Path(__file__).resolve().parent.parent

PASSAGE_COLS = (
    "q",
    "article_ok",
    "gold",
    "base",
    "dense",
    "lex",
    "lmax",
    "dhi",
    "dlo",
    "fused_pos",
    "art_rank",
    "ord",
    "n_sent",
    "same_lang",
    "p_overlap",
    "s_begin",
    "p_cent",
)
SENT_COLS = ("fair", "plain", "overlap", "covers", "s_cent")


class Corpus:
    """Per index: each passage's sentences as term sets, and IDF over passages."""

    def __init__(self, svc: SearchService) -> None:
        store = svc.core.store
        gen = svc.core.state.generation
        ids = [int(i) for i in store.passage_ids(gen)]
        rows = store.passages(ids)
        sents = store.passage_sentences(ids)
        self.sent_terms: dict[int, list[set[str]]] = {}
        self.sent_spans: dict[int, Any] = {}
        self.sent_vecs: dict[int, Any] = {}
        self.passage_terms: dict[int, set[str]] = {}
        df: Counter[str] = Counter()
        for pid in ids:
            r = rows[pid]
            pt = set(terms(r.text, r.language))
            self.passage_terms[pid] = pt
            df.update(pt)
            if pid in sents:
                sp = sents[pid].spans
                self.sent_spans[pid] = sp
                self.sent_vecs[pid] = sents[pid].vectors
                self.sent_terms[pid] = [
                    set(terms(r.text[int(b) - r.char_start : int(e) - r.char_start], r.language))
                    for b, e in sp
                ]
        # How typical of its article each passage and sentence is: cosine to the mean of the
        # article's other passages (0 for a one-passage article) and to the mean of all of them.
        pvec: dict[int, Any] = {}
        for vids, vecs, _ in store.iter_vectors(gen, ids):
            for i, v in zip(vids, vecs, strict=True):
                pvec[int(i)] = np.asarray(v, dtype=np.float64)
        by_article: dict[str, list[int]] = {}
        for pid in ids:
            by_article.setdefault(rows[pid].article_id, []).append(pid)
        self.p_cent: dict[int, float] = {}
        self.art_mean: dict[str, Any] = {}
        for aid, pids in by_article.items():
            tot = sum(pvec[p] for p in pids)
            self.art_mean[aid] = tot / max(np.linalg.norm(tot), 1e-9)
            for p in pids:
                rest = tot - pvec[p]
                nr = np.linalg.norm(rest)
                self.p_cent[p] = float(pvec[p] @ rest / nr) if len(pids) > 1 and nr > 1e-9 else 0.0
        n = len(ids)
        self.idf = {t: math.log(1 + (n - c + 0.5) / (c + 0.5)) for t, c in df.items()}
        self.rows = rows


def dump_setting(
    svc: SearchService,
    emb: CachingEmbedder,
    qs: Sequence[tuple[Question, str, tuple[int, int]]],
    setting: str,
    acc: dict[str, list[Any]],
) -> None:
    corpus = Corpus(svc)
    searcher = svc._searcher
    core = svc.core
    qvecs = emb.encode_queries([q.text for q, _, _ in qs])
    for (q, target, span), qv in zip(qs, qvecs, strict=True):
        sq = SearchQuery(text=q.text, top_k=10, mode="hybrid", per_article=1)
        p = plan(sq, max_chars=core.config.max_query_chars, fairness=core.config.fairness)
        with core.lock.read():
            snap, qvec = searcher._snapshot(core.state, p, qv)
            lang = identify(snap, p, qvec, None)
            c = searcher._retrieve(snap, p, qvec, lang, None)
            heads = snap.store.passage_heads([pid for pid, _ in c.fused[: p.depth]])
            fused0 = list(c.fused)
            _, evidence = searcher._sharpen(snap, p, qvec, c, heads, lang)
        qi = len(acc["q_setting"])
        acc["q_setting"].append(setting)
        acc["q_lang"].append(q.language)
        acc["q_qid"].append(q.qid)
        acc["q_fair"].append(c.fair is not None)
        acc["q_certain"].append(lang.certain)
        qterms = set(terms(q.text, lang.code))
        fpos = {pid: i for i, (pid, _) in enumerate(fused0)}
        art_rank: dict[str, int] = {}
        for pid, _ in fused0:
            if pid in heads:
                art_rank.setdefault(heads[pid][0], len(art_rank))
        head = [c.dense[i] for i in c.dense_order[:100] if i in c.dense] or list(c.dense.values())
        dhi, dlo = max(head), min(head)
        lmax = max(c.lexical.values()) if c.lexical else 0.0
        base = dict(fused0)
        prow: list[tuple[Any, ...]] = []
        srow: list[tuple[Any, ...]] = []
        for pid, ev in evidence.items():
            row = corpus.rows[pid]
            sp = corpus.sent_spans[pid]
            ok = row.article_id == target
            prow.append(
                (
                    qi,
                    ok,
                    ok and row.char_start <= span[0] and span[1] <= row.char_end,
                    base.get(pid, c.dense.get(pid, 0.0)),
                    c.dense.get(pid, 0.0),
                    c.lexical.get(pid, 0.0),
                    lmax,
                    dhi,
                    dlo,
                    fpos.get(pid, 10**6),
                    art_rank.get(row.article_id, 10**6),
                    row.ord,
                    len(sp),
                    row.language == lang.code,
                    sum(corpus.idf.get(t, 0.0) for t in qterms & corpus.passage_terms[pid]),
                    acc["s_count"][0] + len(srow),
                    corpus.p_cent[pid],
                )
            )
            sims = (
                ev.plain
                if c.fair is None
                else c.fair.rescore(corpus.sent_vecs[pid], [c.langs.get(pid, "")] * len(sp))
            )
            scent = np.asarray(corpus.sent_vecs[pid], dtype=np.float64) @ corpus.art_mean[row.article_id]
            for j, (b, e) in enumerate(sp):
                srow.append(
                    (
                        float(sims[j]),
                        float(ev.plain[j]),
                        sum(corpus.idf.get(t, 0.0) for t in qterms & corpus.sent_terms[pid][j]),
                        ok and b <= span[0] and span[1] <= e,
                        float(scent[j]),
                    )
                )
        acc["s_count"][0] += len(srow)
        acc["p"].append(np.array(prow, dtype=np.float64).reshape(-1, len(PASSAGE_COLS)))
        acc["s"].append(np.array(srow, dtype=np.float32).reshape(-1, len(SENT_COLS)))


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sample", type=int, default=0)
    ap.add_argument("--settings", default="monolingual,crosslingual,mixed")
    ap.add_argument("--out", type=Path, default=Path("/tmp/quality-features.npz"))
    ap.add_argument(
        "--cache", type=Path, default=Path.home() / ".cache" / "citesearch" / "quality-embeddings.npz"
    )
    args = ap.parse_args(argv)
    docs, questions = load()
    qids = sorted({q.qid for q in questions})
    if args.sample:
        qids = random.Random(0).sample(qids, args.sample)
    keep = set(qids)
    questions = [q for q in questions if q.qid in keep]
    emb = CachingEmbedder(load_embedder(), args.cache)
    acc: dict[str, list[Any]] = {
        k: [] for k in ("q_setting", "q_lang", "q_qid", "q_fair", "q_certain", "p", "s")
    }
    acc["s_count"] = [0]
    t0 = time.perf_counter()

    def run(
        name: str, ds: Sequence[Doc], qs: list[tuple[Question, str, tuple[int, int]]], neutral: bool
    ) -> None:
        svc, _ = build(emb, ds, neutral)
        try:
            dump_setting(svc, emb, qs, name, acc)
        finally:
            svc.close()
        print(f"  {name}: {len(qs)} questions ({time.perf_counter() - t0:.0f}s)", file=sys.stderr)

    for setting in settings(docs, questions, set(args.settings.split(","))):
        run(setting.name, setting.docs, setting.questions, setting.neutral)
    emb.save()
    p = np.vstack(acc["p"])
    s = np.vstack(acc["s"])
    np.savez(
        args.out,
        p=p,
        s=s,
        p_cols=np.array(PASSAGE_COLS),
        s_cols=np.array(SENT_COLS),
        q_setting=np.array(acc["q_setting"]),
        q_lang=np.array(acc["q_lang"]),
        q_qid=np.array(acc["q_qid"]),
        q_fair=np.array(acc["q_fair"]),
        q_certain=np.array(acc["q_certain"]),
    )
    print(
        f"wrote {args.out}: {len(acc['q_setting'])} questions, {len(p)} passages, {len(s)} sentences",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
