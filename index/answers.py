"""The sentence that answers: the answer model reads the question with the leading passages' sentences.

Search already has every sentence unit of the page's passages with its stored vector's cosine to
the question (index/search.py, `Evidence`). For the first `answer_hits` hits of a page, the
`ANSWER_SHORTLIST` units nearest the question by cosine (all of them in a short passage) are read
by the answer model (embeddings/answer_model.py) together with the question; each gets a logit and
a probability of answering it calibrated for the two languages. The highlight of a read hit is its
most probable unit, joined by the adjacent unit when the model is unsure between the two (the
model's `unsure_margin`); it *answers* when its probability reaches the model's threshold. Hits the model did
not read keep the sentence nearest by cosine and answer nothing.

The model runs on the inference scheduler with a question's priority, outside the index lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np
import numpy.typing as npt

from citesearch.embeddings.scheduler import InferenceScheduler
from citesearch.index.highlights import Highlight
from citesearch.index.store import PassageRow

ANSWER_SHORTLIST = 3
"""Units of a passage the model reads (the nearest by cosine); on XQuAD's train titles the three
nearest hold the answer for ~95% of the questions whose passage holds it."""

Floats = npt.NDArray[np.float32]


class AnswerReader(Protocol):
    """What the domain needs from the answer model (`embeddings.AnswerModel` is the real one)."""

    @property
    def threshold(self) -> float:
        """Probability at or above which a sentence answers."""
        ...

    @property
    def unsure_margin(self) -> float:
        """Logits within which the adjacent runner-up joins the best sentence in a highlight."""
        ...

    @property
    def engine_name(self) -> str:
        """The engine and precision it runs on (e.g. `openvino-bf16`), for stats."""
        ...

    def logits(self, question: str, sentences: Sequence[str], cosines: Sequence[float]) -> Floats:
        """How strongly each sentence answers the question (one model pass)."""
        ...

    def calibrate(
        self,
        logits: Floats,
        question_language: str | None,
        sentence_language: str | None,
        passage_cosine: float,
    ) -> Floats:
        """The probabilities of `logits` for this pair of languages, given how near the passage
        itself is to the question (a sentence answers only inside a passage that does)."""
        ...


@dataclass(frozen=True)
class Units:
    """A passage's sentence units (article offsets), each one's cosine with the question, and the
    passage's own (plain inner product of the stored vectors: the same scale whatever the corpus)."""

    spans: npt.NDArray[np.int32]
    cosines: Floats
    passage_cosine: float


def shortlist(units: Units, size: int = ANSWER_SHORTLIST) -> list[int]:
    """Indexes of the units the model reads: the `size` nearest by cosine, in passage order."""
    order = np.argsort(-units.cosines, kind="stable")[:size]
    return sorted(int(i) for i in order)


def _text(row: PassageRow, start: int, end: int) -> str:
    return row.text[max(start - row.char_start, 0) : max(end - row.char_start, 0)]


def read_hits(
    scheduler: InferenceScheduler,
    reader: AnswerReader,
    question: str,
    question_language: str | None,
    rows: Sequence[PassageRow],
    units: Sequence[Units | None],
    lights: Sequence[Highlight],
    n_hits: int,
) -> list[Highlight]:
    """The highlights of the first `n_hits` rows chosen and scored by the answer model (one
    scheduler task for all of them); the others as given."""
    todo = [i for i in range(min(n_hits, len(rows))) if units[i] is not None and len(units[i].spans)]  # type: ignore[union-attr]
    if not todo:
        return list(lights)
    picks = {i: shortlist(units[i]) for i in todo}  # type: ignore[arg-type]

    texts: list[str] = []
    cosines: list[float] = []
    for i in todo:
        u = units[i]
        assert u is not None
        texts += [_text(rows[i], int(u.spans[j][0]), int(u.spans[j][1])) for j in picks[i]]
        cosines += [float(u.cosines[j]) for j in picks[i]]
    # One model call for every hit: the model batches the pairs by length.
    flat: Floats = scheduler.run_query_work(lambda: reader.logits(question, texts, cosines))
    bounds = np.cumsum([0, *(len(picks[i]) for i in todo)])
    logits = [flat[bounds[k] : bounds[k + 1]] for k in range(len(todo))]
    result = list(lights)
    for i, lg in zip(todo, logits, strict=True):
        u = units[i]
        assert u is not None
        probs = reader.calibrate(lg, question_language, rows[i].language, u.passage_cosine)
        result[i] = highlight_of(rows[i], u, picks[i], lg, probs, reader)
    return result


def highlight_of(
    row: PassageRow, units: Units, picked: list[int], logits: Floats, probs: Floats, reader: AnswerReader
) -> Highlight:
    """The most probable unit, with its adjacent runner-up when the model is unsure between the two
    (logits within `reader.unsure_margin`: on XQuAD's tune titles such a pair holds the answer
    much more often than the best alone, for about a sixth more highlighted text)."""
    order = np.argsort(-logits, kind="stable")
    best = int(order[0])
    b, e = (int(x) for x in units.spans[picked[best]])
    if len(order) > 1:
        second = int(order[1])
        adjacent = abs(picked[best] - picked[second]) == 1
        if adjacent and float(logits[best] - logits[second]) < reader.unsure_margin:
            b2, e2 = (int(x) for x in units.spans[picked[second]])
            b, e = min(b, b2), max(e, e2)
    start, end = max(b - row.char_start, 0), min(e - row.char_start, len(row.text))
    cos = float(units.cosines[picked[best]])
    return Highlight(
        row.text[start:end],
        row.char_start + start,
        row.char_start + end,
        round(cos, 6),
        probability=round(float(probs[best]), 6),
        answers=float(probs[best]) >= reader.threshold,
    )


def unread(light: Highlight) -> Highlight:
    """A highlight the model did not read: it answers nothing."""
    return replace(light, probability=None, answers=False)
