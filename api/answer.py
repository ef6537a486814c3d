"""Answers in prose with [n] citations, built from search results: extractive by default, an LLM's when configured.

- Extractive: the answer model (embeddings/answer_model.py, index/answers.py) reads the question
  with the nearest sentences of the first ANSWER_HITS results and gives each a calibrated
  probability of answering it. Every result whose best sentence reaches the model's threshold
  (`Highlight.answers`) is quoted, in rank order, at most MAX_SENTENCES, near-duplicates once,
  each followed by its result's label, in the passage's own language. When none does, the answer
  says so in the question's language (`answered: false`) rather than quote noise. The threshold
  and the calibration per language pair come from XQuAD's train titles (bench/train_answer.py,
  bench/answer_eval.py).
- Generated: the LLM reads the numbered passages and answers in the question's language; labels
  it cites that were not in its context are removed and reported (`dropped_labels`). An LLM that
  fails or times out gives the extractive answer with `llm_fallback: true` and the reason.

Labels are the results' own (`[3]` cites `results[2]`), so an answer, its citations and its
results agree in both modes. Every citation is exact: article.text[char_start:char_end] == text.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote

import regex

from citesearch.api import presenters
from citesearch.api.llm import LLMClient, LLMError, Message
from citesearch.api.schemas import AnswerCitation, AnswerRequest, AnswerResponse
from citesearch.api.settings import Settings
from citesearch.index.search import Hit, SearchOutcome, SearchQuery
from citesearch.index.service import SearchService

ANSWER_HITS = 2
"""Hits whose sentences the answer model reads for an answer (the first of the results list)."""
MAX_SENTENCES = 3
"""Most sentences in an extractive answer."""
HISTORY_TURNS = 6
"""Earlier chat turns passed to the LLM (each cut to HISTORY_CHARS)."""
HISTORY_CHARS = 2000
EARLIER_CHARS = 300
"""Most characters of the previous user message searched with a follow-up question."""

NO_ANSWER = {
    "en": "The indexed articles do not answer this question.",
    "zh": "已收录的文章没有回答这个问题。",
    "ja": "登録された記事にはこの質問への答えがありません。",
    "ko": "색인된 기사에는 이 질문에 대한 답이 없습니다.",
    "de": "Die indexierten Artikel beantworten diese Frage nicht.",
    "fr": "Les articles indexés ne répondent pas à cette question.",
    "es": "Los artículos indexados no responden a esta pregunta.",
    "it": "Gli articoli indicizzati non rispondono a questa domanda.",
    "pt": "Os artigos indexados não respondem a esta pergunta.",
    "ru": "Проиндексированные статьи не отвечают на этот вопрос.",
    "ar": "المقالات المفهرسة لا تجيب عن هذا السؤال.",
}
FRAME = {
    "en": "The indexed articles say:",
    "zh": "已收录的文章中写道：",
    "ja": "登録された記事にはこう書かれています：",
    "ko": "색인된 기사에는 이렇게 쓰여 있습니다:",
    "de": "In den indexierten Artikeln steht:",
    "fr": "Les articles indexés disent :",
    "es": "Los artículos indexados dicen:",
    "it": "Gli articoli indicizzati dicono:",
    "pt": "Os artigos indexados dizem:",
    "ru": "В проиндексированных статьях сказано:",
    "ar": "تقول المقالات المفهرسة:",
}
"""The line a chat answer without an LLM opens with, in the user's language: the quotes that follow
stay verbatim in their own languages."""
SYSTEM_PROMPT = (
    "You answer questions using only the numbered news sources given. Answer in the language of the "
    "question, briefly. After each sentence, cite the sources it relies on as [n], using only the "
    "numbers of the sources given. If the sources do not answer the question, say so."
)

_INNER_LABEL = regex.compile(r"\s*\[\d{1,4}\]")
_SPACES = regex.compile(r"\s+")
_WORDS = regex.compile(r"[\p{L}\p{N}]+")
_LABEL_GROUP = regex.compile(r"( ?)\[(\s*\d{1,4}(?:\s*[,;]\s*\d{1,4})*\s*)\]")
_OPEN_LABEL = regex.compile(r" ?(?:\[[\d\s,;]{0,24})?$")  # a label that may still open or close

Event = tuple[Literal["delta"], str] | tuple[Literal["done"], AnswerResponse]


def span_url(base: str, article_id: str, start: int, end: int) -> str:
    """A link to a cited span on this server's article page."""
    return f"{base}/articles/{quote(article_id, safe='')}#chars={start}-{end}"


def cite_url(base: str, own: str | None, article_id: str, start: int, end: int) -> str:
    """The article's own URL, else the link to the span on this server."""
    return own or span_url(base, article_id, start, end)


# ---- retrieval ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Retrieved:
    """The search behind an answer (its hits' highlights read by the answer model)."""

    request: AnswerRequest
    outcome: SearchOutcome
    started: float


def search_text(question: str, earlier: str | None, max_chars: int) -> str:
    """What to search for: the question, after the previous user message when in a conversation,
    so that a follow-up ("and does it have a backdoor?") finds what it refers to."""
    if not earlier or not earlier.strip():
        return question
    room = max(0, max_chars - len(question) - 1)
    return f"{earlier.strip()[-min(room, EARLIER_CHARS) :]}\n{question}" if room else question


def retrieve(service: SearchService, req: AnswerRequest, earlier: str | None = None) -> Retrieved:
    """The search behind an answer: the results list a search with the same question and filters
    gives (so `[n]` is the same result in both), the answer model reading its first ANSWER_HITS hits.

    In a conversation (`earlier`: the previous user message) the follow-up is searched twice: with
    the previous message before it (so "and how much could they lose?" finds its topic) and alone
    (so a follow-up that names its topic finds the passage answering it, not the one that answered
    the first question). Both times the answer model reads the follow-up alone, and the search whose
    best read sentence it finds more likely to answer wins.
    """
    started = time.perf_counter()
    outcome = service.search(_answer_query(req, req.query))
    text = search_text(req.query, earlier, service.config.max_query_chars)
    if text != req.query:
        framed = service.search(_answer_query(req, text, read=req.query))
        if _confidence(framed) > _confidence(outcome):
            outcome = framed
    return Retrieved(req, outcome, started)


def _answer_query(req: AnswerRequest, text: str, read: str | None = None) -> SearchQuery:
    return SearchQuery(
        text=text,
        read_text=read,
        top_k=req.top_k,
        filters=presenters.search_filters(req.filters),
        language=req.query_language,
        highlight="semantic",
        answer_hits=ANSWER_HITS,
    )


def _confidence(outcome: SearchOutcome) -> float:
    """The answer model's highest probability among the hits it read (0 when it read none)."""
    return max((h.highlight.probability or 0.0 for h in outcome.hits), default=0.0)


# ---- extractive -----------------------------------------------------------------------------------


def clean_sentence(text: str) -> str:
    """A quoted sentence for the answer: its own bracketed numbers (a source's footnotes) and
    runs of whitespace removed, so that every label in the answer is one of ours."""
    return _SPACES.sub(" ", _INNER_LABEL.sub("", text)).strip()


def _near_duplicate(a: str, b: str) -> bool:
    """Same words, near enough (wire copies of one story), or one inside the other."""
    if a in b or b in a:
        return True
    wa, wb = set(_WORDS.findall(a.casefold())), set(_WORDS.findall(b.casefold()))
    return bool(wa and wb) and len(wa & wb) / len(wa | wb) >= 0.7


def pick(hits: Sequence[Hit]) -> list[int]:
    """Indices of the hits whose highlighted sentence answers (the answer model says so), in rank
    order, near-duplicates once, at most MAX_SENTENCES (empty when none answers)."""
    kept: list[int] = []
    for i, hit in enumerate(hits):
        text = clean_sentence(hit.highlight.text)
        if not hit.highlight.answers or not text:
            continue
        if not any(_near_duplicate(text, clean_sentence(hits[j].highlight.text)) for j in kept):
            kept.append(i)
        if len(kept) == MAX_SENTENCES:
            break
    return kept


def no_answer(language: str | None) -> str:
    """ "Nothing answers", in the question's language when we have it (English otherwise)."""
    return NO_ANSWER.get((language or "en").split("-")[0].lower(), NO_ANSWER["en"])


def frame(language: str | None) -> str:
    """The line that introduces quoted sentences in a chat, in the user's language (English otherwise)."""
    return FRAME.get((language or "en").split("-")[0].lower(), FRAME["en"])


def sentence_citation(hit: Hit, label: str, base: str) -> AnswerCitation:
    """A citation of a hit's answering sentence."""
    h = hit.highlight
    return _citation(hit, label, base, h.char_start, h.char_end, h.text)


def passage_citation(hit: Hit, label: str, base: str) -> AnswerCitation:
    """A citation of a whole passage (what the LLM read)."""
    p = hit.passage
    return _citation(hit, label, base, p.char_start, p.char_end, p.text)


def _citation(hit: Hit, label: str, base: str, char_start: int, char_end: int, text: str) -> AnswerCitation:
    """A citation of the span `[char_start, char_end)` of a hit's article, whose text is `text`."""
    p = hit.passage
    return AnswerCitation(
        label=label,
        article_id=p.article_id,
        passage_id=p.id,
        title=p.title,
        url=cite_url(base, p.url, p.article_id, char_start, char_end),
        source=p.source,
        published_at=p.published_at,
        char_start=char_start,
        char_end=char_end,
        text=text,
    )


def extractive_pieces(r: Retrieved, base: str) -> tuple[list[str], list[AnswerCitation]]:
    """The answer's sentences ("sentence [n]") and their citations; no sentences when nothing answers."""
    hits = r.outcome.hits
    picked = pick(hits)
    pieces = [f"{clean_sentence(hits[i].highlight.text)} [{i + 1}]" for i in picked]
    return pieces, [sentence_citation(hits[i], f"[{i + 1}]", base) for i in picked]


# ---- generated ------------------------------------------------------------------------------------


def llm_context(hits: Sequence[Hit]) -> str:
    """The numbered sources the LLM reads; the sources' own bracketed numbers become (n), so that
    [n] means one of ours."""
    parts = []
    for i, h in enumerate(hits, start=1):
        p = h.passage
        head = ", ".join(x for x in (p.title, p.source, (p.published_at or "")[:10]) if x)
        text = regex.sub(r"\[(\d{1,4})\]", r"(\1)", p.text)
        parts.append(f"[{i}] {head}\n{text}" if head else f"[{i}]\n{text}")
    return "\n\n".join(parts)


def llm_messages(question: str, hits: Sequence[Hit], history: Sequence[Message]) -> list[Message]:
    """System prompt, the last turns of the conversation, then the sources and the question."""
    turns = [{"role": m["role"], "content": m["content"][:HISTORY_CHARS]} for m in history[-HISTORY_TURNS:]]
    user = f"Sources:\n\n{llm_context(hits)}\n\nQuestion: {question}"
    return [{"role": "system", "content": SYSTEM_PROMPT}, *turns, {"role": "user", "content": user}]


class LabelFilter:
    """Keeps the labels an LLM cites that name a source it was given ([1]..[n]); removes the others.

    Fed the answer piece by piece (streaming), it holds back a label still open at the end of a
    piece until it closes, so a refused label never reaches the client. "[1, 2]" becomes "[1][2]".
    """

    def __init__(self, n_sources: int) -> None:
        self.n = n_sources
        self.used: list[int] = []
        self.dropped: list[str] = []
        self._held = ""

    def _group(self, m: regex.Match[str]) -> str:
        kept = []
        for s in regex.findall(r"\d+", m.group(2)):
            n = int(s)
            if 1 <= n <= self.n:
                kept.append(n)
                if n not in self.used:
                    self.used.append(n)
            elif f"[{n}]" not in self.dropped:
                self.dropped.append(f"[{n}]")
        return m.group(1) + "".join(f"[{n}]" for n in kept) if kept else ""

    def feed(self, piece: str) -> str:
        """The text that can be shown now."""
        text = self._held + piece
        open_label = _OPEN_LABEL.search(text)
        cut = open_label.start() if open_label else len(text)
        self._held = text[cut:]
        return _LABEL_GROUP.sub(self._group, text[:cut])

    def close(self) -> str:
        """What was held back at the end."""
        text, self._held = self._held, ""
        return _LABEL_GROUP.sub(self._group, text)


# ---- the answerer ---------------------------------------------------------------------------------


class Answerer:
    """Answers one retrieved question: extractive, or by the configured LLM with the extractive fallback."""

    def __init__(self, settings: Settings, base_url: str, *, framed: bool = False) -> None:
        """`framed`: extractive answers open with a line in the user's language (chat)."""
        self.base = settings.public_url or base_url.rstrip("/")
        self.framed = framed
        self.llm = (
            LLMClient(settings.llm_url, settings.llm_model, settings.llm_api_key, settings.llm_timeout_s)
            if settings.llm_url
            else None
        )

    def _uses_llm(self, r: Retrieved) -> bool:
        return self.llm is not None and r.request.mode == "auto" and bool(r.outcome.hits)

    def _response(
        self,
        r: Retrieved,
        answer: str,
        citations: list[AnswerCitation],
        mode: Literal["extractive", "generated"],
        **flags: object,
    ) -> AnswerResponse:
        o = r.outcome
        return AnswerResponse.model_validate(
            {
                "query": r.request.query,
                "answer": answer,
                "answered": bool(citations) or (mode == "generated" and bool(o.hits)),
                "mode": mode,
                "citations": citations,
                "results": [presenters.search_result(h, f"[{i}]") for i, h in enumerate(o.hits, start=1)],
                "query_language": o.query_language,
                "generation": o.generation,
                "took_ms": round((time.perf_counter() - r.started) * 1000, 3),
                **flags,
            }
        )

    def extractive(self, r: Retrieved, **flags: object) -> AnswerResponse:
        """The extractive answer (flags: why it is not the LLM's, when it should have been)."""
        pieces, citations = extractive_pieces(r, self.base)
        answer = " ".join(pieces) if pieces else no_answer(self._language(r))
        if pieces and self.framed:
            answer = f"{frame(self._language(r))}\n\n{answer}"
        return self._response(r, answer, citations, "extractive", **flags)

    @staticmethod
    def _language(r: Retrieved) -> str | None:
        """The user's language: as given, else the question's as identified."""
        return r.request.query_language or r.outcome.query_language

    def _generated(self, r: Retrieved, text: str, labels: LabelFilter, **flags: object) -> AnswerResponse:
        hits = r.outcome.hits
        citations = [passage_citation(hits[n - 1], f"[{n}]", self.base) for n in labels.used]
        return self._response(r, text.strip(), citations, "generated", dropped_labels=labels.dropped, **flags)

    def answer(self, r: Retrieved, history: Sequence[Message] = ()) -> AnswerResponse:
        """The whole answer at once."""
        if self.llm is None or not self._uses_llm(r):
            return self.extractive(r)
        try:
            text = self.llm.complete(llm_messages(r.request.query, r.outcome.hits, history))
        except LLMError as exc:
            return self.extractive(r, llm_fallback=True, llm_error=exc.reason)
        if not text.strip():
            return self.extractive(r, llm_fallback=True, llm_error="empty_response")
        labels = LabelFilter(len(r.outcome.hits))
        return self._generated(r, labels.feed(text) + labels.close(), labels)

    def _extractive_events(self, r: Retrieved, **flags: object) -> Iterator[Event]:
        done = self.extractive(r, **flags)
        pieces, _ = extractive_pieces(r, self.base)
        if pieces and self.framed:
            pieces = [f"{frame(self._language(r))}\n\n{pieces[0]}", *pieces[1:]]
        for i, piece in enumerate(pieces or [done.answer]):
            yield "delta", piece if i == 0 else " " + piece
        yield "done", done

    def events(self, r: Retrieved, history: Sequence[Message] = ()) -> Iterator[Event]:
        """The answer as it is made: ("delta", text) pieces, then ("done", the whole response).

        An LLM that fails before its first piece gives the extractive answer (flagged); one that
        fails later ends the answer where it stopped, with `llm_error` set.
        """
        if self.llm is None or not self._uses_llm(r):
            yield from self._extractive_events(r)
            return
        stream = self.llm.stream(llm_messages(r.request.query, r.outcome.hits, history))
        try:
            first = next(stream, None)
        except LLMError as exc:
            yield from self._extractive_events(r, llm_fallback=True, llm_error=exc.reason)
            return
        if first is None:
            yield from self._extractive_events(r, llm_fallback=True, llm_error="empty_response")
            return
        labels, shown, error = LabelFilter(len(r.outcome.hits)), [], None
        try:
            for piece in _chain(first, stream):
                out = labels.feed(piece)
                if out:
                    shown.append(out)
                    yield "delta", out
        except LLMError as exc:
            error = exc.reason
        tail = labels.close()
        if tail:
            shown.append(tail)
            yield "delta", tail
        yield "done", self._generated(r, "".join(shown), labels, llm_error=error)


def _chain(first: str, rest: Iterator[str]) -> Iterator[str]:
    yield first
    yield from rest
