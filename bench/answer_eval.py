"""The answer-sentence model end to end on XQuAD: highlights and extractive answers through the real search.

    .venv/bin/python -m bench.answer_eval --part tune --fit      # calibrate and choose the threshold
    .venv/bin/python -m bench.answer_eval --part test            # report (test titles)

Indexes (every article of the 48 titles, as the service would hold them; neutral titles):
- `mono-<L>`: the articles in L, questions in L (12 indexes);
- `cross`: the English articles, questions in the 11 other languages; `en>zh`: the Chinese articles,
  English questions;
- `unanswerable`: the English articles of every title *but* the part's, questions about the part's
  titles in all 12 languages (their article is not there).
Only questions about the part's titles are asked (`--per-lang` per language and index, drawn with
a fixed seed). Each question goes through `SearchService.search` as `/v1/answer` asks it
(`api.answer.retrieve`'s query: top 5, the model reading the first ANSWER_HITS hits), and
`api.answer.pick` decides what is quoted.

Figures: highlight holds the answer (the top hit is the right passage; its highlight covers the
answer span), mean highlight length, cosine highlight for comparison; answer quotes a sentence
holding the answer (share of answerable questions), answered unanswerable questions; per language pair.

`--fit` (tune titles only): records every logit the model gives, fits the Platt scaling of each
language-pair class (`same`, `cross`, and each pair with enough examples), chooses the threshold
(the most answerable questions answered correctly with at most MAX_NOISE of the unanswerable
ones answered), and writes both into embeddings/answer/answer-model.json.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.answer_data import split
from bench.quality import LANGS, CachingEmbedder, Doc, Question, build, load, safe_id
from citesearch.api import answer
from citesearch.embeddings import load_embedder
from citesearch.embeddings.answer_model import (
    CONFIG_FILE,
    COS_CENTER,
    SHIPPED_DIR,
    AnswerModel,
    Calibration,
    Scaling,
)
from citesearch.index.search import Hit, SearchQuery
from citesearch.index.service import SearchService

ROOT = Path(__file__).resolve().parent.parent
MAX_NOISE = 0.04
"""Most unanswerable questions the chosen threshold may answer (the target is 0.05)."""
MIN_PAIR_EXAMPLES = 150
"""Read units a language pair needs to get its own Platt scaling (else its class's)."""


@dataclass
class Recorder:
    """The answer model, recording every read (question, sentences, logits) for fitting."""

    model: AnswerModel
    calibration: Calibration | None = None
    threshold_override: float | None = None
    calls: list[dict[str, Any]] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)

    @property
    def threshold(self) -> float:
        return self.model.threshold if self.threshold_override is None else self.threshold_override

    @property
    def unsure_margin(self) -> float:
        return self.model.unsure_margin

    @property
    def engine_name(self) -> str:
        return self.model.engine_name

    def logits(self, question: str, sentences: Sequence[str], cosines: Sequence[float]) -> Any:
        out = self.model.logits(question, sentences, cosines)
        self.pending = list(sentences)
        return out

    def calibrate(
        self, logits: Any, question_language: str | None, sentence_language: str | None, passage_cosine: float
    ) -> Any:
        # read_hits calibrates each read hit's slice of the one logits call, in hit order
        n = len(logits)
        texts, self.pending = self.pending[:n], self.pending[n:]
        self.calls.append(
            {
                "sentences": texts,
                "logits": [float(x) for x in logits],
                "q": question_language,
                "s": sentence_language,
                "pcos": passage_cosine,
            }
        )
        cal = self.calibration or self.model.config.calibration
        return cal.probabilities(logits, question_language, sentence_language, passage_cosine)


@dataclass(frozen=True)
class Asked:
    """One question's outcome."""

    index: str
    pair: str
    answerable: bool
    top_right: bool
    highlight_holds: bool | None
    cosine_holds: bool | None
    highlight_chars: int
    cosine_chars: int | None
    """Length of the cosine-nearest sentence of the same passage (the highlight before the model)."""
    answered: bool
    quote_holds: bool
    reads: list[dict[str, Any]]
    """Per read unit: logit, pair, holds (for fitting)."""
    took_ms: float


def _covers(hit: Hit, art: str, span: tuple[int, int], start: int, end: int) -> bool:
    return hit.passage.article_id == art and start <= span[0] and span[1] <= end


def ask(
    svc: SearchService,
    rec: Recorder,
    index: str,
    q: Question,
    target: str | None,
    span: tuple[int, int],
    cosine_svc_query: bool = True,
) -> Asked:
    """Ask one question as /v1/answer does; score highlights and the quote."""
    rec.calls.clear()
    query = SearchQuery(text=q.text, top_k=5, highlight="semantic", answer_hits=answer.ANSWER_HITS)
    t0 = time.perf_counter()
    out = svc.search(query)
    took = (time.perf_counter() - t0) * 1000
    hits = out.hits
    pair = f"{q.language}>{hits[0].passage.language}" if hits else f"{q.language}>?"
    reads: list[dict[str, Any]] = []
    for k, (hit, call) in enumerate(zip(hits, list(rec.calls), strict=False)):
        for s, logit in zip(call["sentences"], call["logits"], strict=True):
            at = hit.passage.text.find(s)
            start = hit.passage.char_start + at
            inside = target is not None and at >= 0 and _covers(hit, target, span, start, start + len(s))
            reads.append(
                {
                    "hit": k,
                    "logit": logit,
                    "pcos": call["pcos"],
                    "q": call["q"],
                    "s": call["s"],
                    "holds": inside,
                    "dense": hit.dense_score,
                    "score": hit.score,
                }
            )
    top = hits[0] if hits else None
    top_right = bool(
        top is not None
        and target is not None
        and _covers(top, target, span, top.passage.char_start, top.passage.char_end)
    )
    hl = top.highlight if top is not None else None
    holds = (
        _covers(top, target, span, hl.char_start, hl.char_end)
        if top_right and top and hl and target
        else None
    )
    cos_holds: bool | None = None
    cos_chars: int | None = None
    if top_right and top is not None and target is not None:
        cosine = svc.search(SearchQuery(text=q.text, top_k=1, answer_hits=0))
        ch = cosine.hits[0].highlight if cosine.hits else None
        cos_chars = len(ch.text) if ch is not None and cosine.hits[0].passage.id == top.passage.id else None
        cos_holds = bool(
            ch
            and cosine.hits[0].passage.id == top.passage.id
            and _covers(top, target, span, ch.char_start, ch.char_end)
        )
    picked = answer.pick(hits)
    quote = any(
        target is not None
        and _covers(hits[i], target, span, hits[i].highlight.char_start, hits[i].highlight.char_end)
        for i in picked
    )
    return Asked(
        index,
        pair,
        target is not None,
        top_right,
        holds,
        cos_holds,
        len(hl.text) if hl is not None else 0,
        cos_chars,
        bool(picked),
        quote,
        reads,
        took,
    )


def indexes(
    docs: dict[str, Doc], questions: list[Question], part: str, per_lang: int, seed: int
) -> list[tuple[str, list[Doc], list[tuple[Question, str | None, tuple[int, int]]]]]:
    """The indexes of the module docstring and the questions asked of each."""
    titles = set(split()[part])
    by_lang_qid = {(q.language, q.qid): q for q in questions}
    title_of = {d.id: d.title for d in docs.values()}
    ours = [q for q in questions if title_of[q.article_id] in titles]
    rnd = random.Random(seed)

    def sample(lang: str) -> list[Question]:
        qs = [q for q in ours if q.language == lang]
        return rnd.sample(qs, min(per_lang, len(qs)))

    def target(q: Question, lang: str) -> tuple[Question, str | None, tuple[int, int]]:
        gold = by_lang_qid[(lang, q.qid)]
        return q, safe_id(gold.article_id), gold.answer_span

    out = []
    for lang in LANGS:
        ds = [d for d in docs.values() if d.language == lang]
        out.append((f"mono-{lang}", ds, [target(q, lang) for q in sample(lang)]))
    en = [d for d in docs.values() if d.language == "en"]
    out.append(("cross", en, [target(q, "en") for lang in LANGS if lang != "en" for q in sample(lang)]))
    zh = [d for d in docs.values() if d.language == "zh"]
    out.append(("en>zh", zh, [target(q, "zh") for q in sample("en")]))
    rest = [d for d in en if d.title not in titles]
    out.append(("unanswerable", rest, [(q, None, (0, 0)) for lang in LANGS for q in sample(lang)]))
    return out


def fit(results: list[Asked]) -> dict[str, Any]:
    """Platt scaling per pair class and the threshold (module docstring)."""
    reads = [r for a in results for r in a.reads]

    def platt(rows: list[dict[str, Any]], prior: Scaling) -> Scaling:
        """(a, b, c) of sigmoid(a * logit + b + c * (passage cosine - COS_CENTER)): Newton's method on
        the mean log loss, pulled a little towards `prior` (a pair with few examples stays near its class)."""
        x = np.array([[r["logit"], 1.0, r["pcos"] - COS_CENTER] for r in rows])
        y = np.array([1.0 if r["holds"] else 0.0 for r in rows])
        w = np.array(prior, dtype=np.float64)
        pw, lam = np.array(prior, dtype=np.float64), 0.01
        for _ in range(100):
            p = 1 / (1 + np.exp(-np.clip(x @ w, -40, 40)))
            grad = x.T @ (p - y) / len(y) + 2 * lam * (w - pw)
            hess = (x * (p * (1 - p))[:, None]).T @ x / len(y) + 2 * lam * np.eye(3)
            step = np.linalg.solve(hess, grad)
            w -= step
            if np.abs(step).max() < 1e-9:
                break
        return float(w[0]), float(w[1]), float(w[2])

    def cls(r: dict[str, Any]) -> str:
        return "same" if r["q"] == r["s"] else "cross"

    default = platt(reads, (1.0, 0.0, 0.0))
    pairs: dict[str, Scaling] = {}
    for c in ("same", "cross"):
        rows = [r for r in reads if cls(r) == c]
        if rows:
            pairs[c] = platt(rows, default)
    by_pair: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in reads:
        by_pair[f"{r['q']}>{r['s']}"].append(r)
    for key, rows in sorted(by_pair.items()):
        if len(rows) >= MIN_PAIR_EXAMPLES and sum(r["holds"] for r in rows) >= 20:
            pairs[key] = platt(rows, pairs[cls(rows[0])])
    cal = Calibration(default, tuple(sorted(pairs.items())))
    # the threshold: replay pick() on the best read unit of each question's read hits
    best_t, best = 0.5, -1.0
    table = []
    for t in np.arange(0.30, 0.951, 0.025):
        ok = noise = n_ans = n_un = 0
        for a in results:
            # what pick() quotes: each read hit's most probable unit, when it reaches t
            top: dict[int, tuple[float, bool]] = {}
            for r in a.reads:
                logit = np.array([r["logit"]], np.float32)
                p = float(cal.probabilities(logit, r["q"], r["s"], r["pcos"])[0])
                if r["hit"] not in top or p > top[r["hit"]][0]:
                    top[r["hit"]] = (p, bool(r["holds"]))
            quoted = [h for p, h in top.values() if p >= t]
            if a.answerable:
                n_ans += 1
                ok += any(quoted)
            else:
                n_un += 1
                noise += bool(quoted)
        rate, nr = ok / max(n_ans, 1), noise / max(n_un, 1)
        table.append({"threshold": round(float(t), 3), "correct": round(rate, 4), "noise": round(nr, 4)})
        if nr <= MAX_NOISE and rate > best:
            best_t, best = float(t), rate
    return {
        "calibration": {"default": list(default), "pairs": {k: list(v) for k, v in pairs.items()}},
        "threshold": round(best_t, 3),
        "table": table,
    }


def _mean(xs: list[int]) -> float | None:
    return round(statistics.mean(xs), 1) if xs else None


def report(results: list[Asked]) -> dict[str, Any]:
    def rate(xs: list[bool | None]) -> float | None:
        ys = [x for x in xs if x is not None]
        return round(sum(ys) / len(ys), 4) if ys else None

    def summary(rs: list[Asked]) -> dict[str, Any]:
        ans = [a for a in rs if a.answerable]
        un = [a for a in rs if not a.answerable]
        return {
            "n": len(rs),
            "top_right": rate([a.top_right for a in ans]),
            "highlight_holds": rate([a.highlight_holds for a in ans]),
            "cosine_highlight_holds": rate([a.cosine_holds for a in ans]),
            "highlight_chars": round(statistics.mean([a.highlight_chars for a in ans]), 1) if ans else None,
            "highlight_chars_same_questions": _mean(
                [a.highlight_chars for a in ans if a.cosine_chars is not None]
            ),
            "cosine_highlight_chars": _mean([a.cosine_chars for a in ans if a.cosine_chars is not None]),
            "answer_quotes_answer": rate([a.quote_holds for a in ans]),
            "answered": rate([a.answered for a in ans]),
            "unanswerable_answered": rate([a.answered for a in un]),
            "p50_ms": round(statistics.median([a.took_ms for a in rs]), 1) if rs else None,
        }

    mono = [a for a in results if a.index.startswith("mono-")]
    cross = [a for a in results if a.index in ("cross", "en>zh")]
    un = [a for a in results if a.index == "unanswerable"]
    by_pair: dict[str, list[Asked]] = defaultdict(list)
    for a in results:
        by_pair[a.pair if a.answerable else f"{a.pair} (unanswerable)"].append(a)
    return {
        "monolingual": summary(mono),
        "cross-lingual": summary(cross),
        "unanswerable": summary(un),
        "pairs": {k: summary(v) for k, v in sorted(by_pair.items())},
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=["tune", "test"], required=True)
    ap.add_argument("--per-lang", type=int, default=30)
    ap.add_argument("--fit", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--dump", type=Path, default=None, help="every question's reads, for analysis")
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache" / "quality-embeddings.npz")
    args = ap.parse_args()
    if args.fit and args.part != "tune":
        raise SystemExit("--fit only on the tune titles")
    from citesearch.api.settings import Settings

    model = Settings().load_answer_model()
    assert model is not None
    rec = Recorder(model)
    embedder = CachingEmbedder(load_embedder(), args.cache)
    docs, questions = load()
    results: list[Asked] = []
    t0 = time.time()
    for name, ds, qs in indexes(docs, questions, args.part, args.per_lang, args.seed):
        svc, _tmp = build(embedder, ds, neutral_titles=True)
        svc.core.answers = rec
        try:
            for q, target, span in qs:
                results.append(ask(svc, rec, name, q, target, span))
        finally:
            svc.close()
        embedder.save()
        print(f"{name}: {len(qs)} questions, {time.time() - t0:.0f}s", flush=True)
    out: dict[str, Any] = {"part": args.part, "per_lang": args.per_lang, "report": report(results)}
    if args.fit:
        fitted = fit(results)
        out["fit"] = fitted
        path = SHIPPED_DIR / CONFIG_FILE
        config = json.loads(path.read_text(encoding="utf-8"))
        config["calibration"] = fitted["calibration"]
        config["threshold"] = fitted["threshold"]
        path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    if args.dump is not None:
        args.dump.write_text(json.dumps([a.__dict__ for a in results]) + "\n", encoding="utf-8")
    dest = args.out or ROOT / "bench" / "results" / f"answer-eval-{args.part}.json"
    dest.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(
        json.dumps(out["report"]["monolingual"]),
        json.dumps(out["report"]["cross-lingual"]),
        json.dumps(out["report"]["unanswerable"]),
    )


if __name__ == "__main__":
    main()
