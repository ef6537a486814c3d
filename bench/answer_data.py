"""XQuAD as (question, sentence) groups for the answer-sentence model: who answers, who does not.

Every paragraph is cut into the sentence units the service stores and highlights
(`index.writes.sentence_units`: the splitter's sentences, short ones joined to a neighbour), so the
model learns on exactly what it will score. A unit *holds* the answer when it covers the answer's
character span (the highlight test of bench/quality.py); a unit that only overlaps it is a
positive for training too (an answer across two sentences), never a negative.

Titles: `split.json`'s train titles are cut into `fit` (what the model learns from) and `tune`
(the last TUNE_TITLES of them in sorted order: what chooses epochs, thresholds and calibration);
the test titles are only ever read by the reports (bench/answer_eval.py).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from citesearch.index.writes import sentence_units

ROOT = Path(__file__).resolve().parent.parent
XQUAD = ROOT.parent / "shared" / "eval" / "xquad"
LANGS = ("ar", "de", "el", "en", "es", "hi", "ro", "ru", "th", "tr", "vi", "zh")
TUNE_TITLES = 5
"""Train titles held out of fitting, to choose what the model's use depends on."""


@dataclass(frozen=True)
class Paragraph:
    """One XQuAD paragraph in one language, with its sentence units (offsets into the article)."""

    article_id: str
    title: str
    language: str
    index: int
    text: str
    """The whole article's text (units are offsets into it)."""
    units: tuple[tuple[int, int], ...]

    def unit_texts(self) -> list[str]:
        return [self.text[b:e] for b, e in self.units]


@dataclass(frozen=True)
class Question:
    """One question in one language, with where its answer is in every language's article."""

    qid: str
    language: str
    text: str
    title: str
    paragraph: int
    answers: dict[str, tuple[int, int]]
    """Answer span (offsets into that language's article) by language."""


@dataclass(frozen=True)
class Group:
    """A question and the units of one paragraph: `labels[i]` 1 when unit i holds (or overlaps) the
    answer; all 0 when the paragraph does not answer; `holds[i]` when unit i covers it whole."""

    question: Question
    paragraph: Paragraph
    labels: tuple[int, ...]
    holds: tuple[bool, ...]

    @property
    def pair(self) -> str:
        """`question language > passage language`, e.g. `zh>en`."""
        return f"{self.question.language}>{self.paragraph.language}"


def _read(name: str) -> list[dict[str, Any]]:
    with (XQUAD / name).open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


@cache
def split() -> dict[str, list[str]]:
    """{"fit", "tune", "test"}: titles (fit and tune are both from split.json's train titles)."""
    s = json.loads((XQUAD / "split.json").read_text(encoding="utf-8"))
    train = sorted(s["train"])
    return {"fit": train[:-TUNE_TITLES], "tune": train[-TUNE_TITLES:], "test": sorted(s["test"])}


@cache
def paragraphs() -> dict[tuple[str, str, int], Paragraph]:
    """Every paragraph by (title, language, index)."""
    out: dict[tuple[str, str, int], Paragraph] = {}
    for a in _read("corpus.jsonl"):
        for k, p in enumerate(a["paragraphs"]):
            units = tuple(sentence_units(a["text"], p["start"], p["end"], a["language"]))
            out[(a["title"], a["language"], k)] = Paragraph(
                a["id"], a["title"], a["language"], k, a["text"], units
            )
    return out


@cache
def questions() -> list[Question]:
    """Every question in every language, with every language's answer span."""
    rows = _read("queries.jsonl")
    titles = {a["id"]: a["title"] for a in _read("corpus.jsonl")}
    spans: dict[str, dict[str, tuple[int, int]]] = {}
    for r in rows:
        spans.setdefault(r["qid"], {})[r["language"]] = (r["answer_span"][0], r["answer_span"][1])
    return [
        Question(
            qid=r["qid"],
            language=r["language"],
            text=r["question"],
            title=titles[r["gold_article_id"]],
            paragraph=int(r["gold_paragraph_id"].rsplit("/p", 1)[1]),
            answers=spans[r["qid"]],
        )
        for r in rows
    ]


def group(q: Question, p: Paragraph) -> Group:
    """The question against one paragraph's units (the gold paragraph in `p.language`, or any other)."""
    gold = p.title == q.title and p.index == q.paragraph
    a0, a1 = q.answers[p.language] if gold else (-1, -1)
    labels = tuple(int(gold and b < a1 and a0 < e) for b, e in p.units)
    holds = tuple(gold and b <= a0 and a1 <= e for b, e in p.units)
    return Group(q, p, labels, holds)


def of_titles(part: str) -> list[Question]:
    titles = set(split()[part])
    return [q for q in questions() if q.title in titles]


def gold_groups(qs: Iterable[Question], pairs: str, rnd: random.Random) -> Iterator[Group]:
    """The gold paragraph for each question, in the passage language(s) `pairs` asks for:
    `mono` (the question's), `en` (English; English questions against Chinese, as in the
    cross-lingual setting), `random` (one language drawn per question), `all` (all twelve)."""
    paras = paragraphs()
    for q in qs:
        if pairs == "mono":
            langs = [q.language]
        elif pairs == "en":
            langs = ["zh" if q.language == "en" else "en"]
        elif pairs == "random":
            langs = [rnd.choice(LANGS)]
        else:
            langs = list(LANGS)
        for lang in langs:
            yield group(q, paras[(q.title, lang, q.paragraph)])


def negative_group(q: Question, rnd: random.Random, *, same_article: bool) -> Group:
    """A paragraph that does not answer `q`: another paragraph of its article (same topic, the hard
    case) or a paragraph of another article, in a random language."""
    paras = paragraphs()
    lang = rnd.choice(LANGS)
    if same_article:
        others = [k for k in range(5) if k != q.paragraph and (q.title, lang, k) in paras]
        return group(q, paras[(q.title, lang, rnd.choice(others))])
    part = next(v for v in split().values() if q.title in v)
    titles = sorted({t for t, _, _ in paras if t != q.title and t in part})
    title = rnd.choice(titles)
    return group(q, paras[(title, lang, rnd.randrange(5))])


CACHE = ROOT / ".cache" / "answer-vectors.npz"


class Cosines:
    """Stored-vector cosines of questions with sentence units, by the served embedder (the
    service stores exactly these unit vectors; its default engine); vectors cached on disk by text."""

    def __init__(self, embedder: Any | None = None) -> None:
        import numpy as np

        self._np = np
        if embedder is None:
            from citesearch.embeddings import load_embedder

            embedder = load_embedder()
        self.emb = embedder
        self.q: dict[str, Any] = {}
        self.p: dict[str, Any] = {}
        if CACHE.is_file():
            data = np.load(CACHE, allow_pickle=False)
            for kind, store in (("q", self.q), ("p", self.p)):
                for t, v in zip(data[f"{kind}_texts"], data[f"{kind}_vecs"], strict=True):
                    store[str(t)] = v
        self._dirty = False

    def fill(self, questions: Iterable[str], units: Iterable[str]) -> None:
        """Encode whatever is not cached yet (questions as queries, units as passages)."""
        np = self._np
        todo_q = sorted({t for t in questions if t not in self.q})
        todo_p = sorted({t for t in units if t not in self.p})
        for i in range(0, len(todo_q), 256):
            chunk = todo_q[i : i + 256]
            self.q.update(zip(chunk, self.emb.encode_queries(chunk), strict=True))
        for i in range(0, len(todo_p), 64):
            chunk = todo_p[i : i + 64]
            self.p.update(zip(chunk, self.emb.encode_passages(chunk), strict=True))
        if todo_q or todo_p:
            CACHE.parent.mkdir(exist_ok=True)
            np.savez(
                CACHE,
                q_texts=np.array(list(self.q)),
                q_vecs=np.stack(list(self.q.values())),
                p_texts=np.array(list(self.p)),
                p_vecs=np.stack(list(self.p.values())),
            )

    def of(self, question: str, units: Sequence[str]) -> tuple[float, ...]:
        self.fill([question], units)
        q = self.q[question]
        return tuple(float(self.p[u] @ q) for u in units)
