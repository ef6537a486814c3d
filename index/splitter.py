"""Sentence-aware passage splitting, sized by the model's own token count, with exact offsets.

How a text becomes passages:
1. Paragraphs: blank lines (or U+2029, form feed) separate paragraphs; a text without blank lines
   uses its single line breaks instead. Paragraph breaks are the preferred passage boundaries.
2. Sentences: sentencex (rules for ~300 languages; the article's language, "en" rules when
   unknown) segments each paragraph. Its output is mapped back to exact offsets and then
   repaired: a cut inside a token ("5.5", "a.b?c=1") is dropped, footnote markers ("[2][3]")
   stay with the sentence before them, and a line break before a line that does not start in
   lower case is a sentence boundary too (headings, list items).
3. Counting: every sentence is counted in one batch. The counter includes the model's prompt and
   special tokens, so a sentence's own share is its count minus the count of "" (the overhead); a
   passage is estimated as overhead + its shares + one token per join (counts are additive to
   within about a token per sentence).
4. Over-long sentences (above max_tokens; for Thai, Lao, Khmer and Burmese, whose spaces separate
   sentences and clauses, above target_tokens) are cut at whitespace into pieces of about a
   quarter of the target, or by characters where there is no whitespace (never before a
   combining mark), and the pieces are counted in one more batch.
5. Packing: dynamic programming chooses the passage boundaries: passages close to target_tokens
   and even in size, exceeding it (by at most 25%, within one paragraph) only to absorb what would
   be a short orphan, and crossing a paragraph break only to pack paragraphs smaller than about
   half the target together. With overlap_sentences=k, a passage also repeats the last k
   sentences of the passage before it, within the same paragraph.
6. Verification: the packed passages are counted in one batch; any above max_tokens loses its
   overlap or is cut in two and counted again, until every passage fits. So count_tokens is called
   twice for most texts (sentences, passages), once more for texts with over-long sentences.
"""

from __future__ import annotations

import itertools
import math
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

import regex
import sentencex

from citesearch.index.language import primary_subtag

__all__ = ["CountTokens", "PassageSpan", "sentence_spans", "split_passages"]

CountTokens = Callable[[list[str]], list[int]]


@dataclass(frozen=True)
class PassageSpan:
    """A passage of an article: text == article_text[char_start:char_end], n_tokens as the model counts."""

    text: str
    char_start: int
    char_end: int
    n_tokens: int


_LB = r"(?:\r\n|[\n\r\x0b\x0c\x85\u2028\u2029])"
_HS = r"[^\S\n\r\x0b\x0c\x85\u2028\u2029]"
_PARA_BREAK = re.compile(rf"{_LB}{_HS}*{_LB}\s*|[\u2029\x0c]\s*")
_LINE_BREAK = re.compile(rf"{_LB}\s*")
_NON_SPACE = re.compile(r"\S+")
_FOOTNOTES = re.compile(r"\s*(?:\[(?:\d{1,4}|[a-z])\])+")
# A sentencex cut between two non-space characters after one of these is inside a token
# (decimal point, URL, abbreviation), never a sentence end.
_IN_TOKEN_PUNCT = frozenset(".?!:;/=&,")
_SPACE_SEPARATED_SCRIPTS = ((0x0E00, 0x0EFF), (0x1780, 0x17FF), (0x1000, 0x109F))
# A passage within one paragraph may exceed the target by this factor rather than leave an orphan.
OVERSHOOT = 1.25
# Each token of overshoot costs as much as sqrt(10) tokens of undershoot: even passages below the
# target are preferred, overshoot is for absorbing what would otherwise be a short orphan.
OVERSHOOT_WEIGHT = 10
# A paragraph up to this factor of the target stays one passage: paragraphs are the units of
# meaning news is written in, and cutting one in two splits the context a question needs.
WHOLE_PARAGRAPH = 1.6
# Bounds the packing work on pathological texts (thousands of one-word sentences).
MAX_UNITS_PER_PASSAGE = 64
# Joining two sentences costs about one token more than counting them apart (measured: 0.95 on XQuAD).
JOIN_TOKENS = 1


@dataclass
class _Unit:
    """A sentence (or a piece of one) of the text, with its exact token count."""

    start: int
    end: int
    para: int
    tokens: int = -1


@dataclass
class _Passage:
    """Consecutive units; the first n_overlap repeat the end of the passage before."""

    units: list[_Unit]
    n_overlap: int = 0
    tokens: int = -1


def _strip_span(text: str, start: int, end: int) -> tuple[int, int]:
    """The span shrunk to its first and last non-space characters (start == end when blank)."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _paragraphs(text: str) -> list[tuple[int, int]]:
    """Non-blank paragraph spans: blank-line separated, or line separated when no blank line exists."""
    breaks = list(_PARA_BREAK.finditer(text))
    if not breaks:
        breaks = list(_LINE_BREAK.finditer(text))
    spans = []
    pos = 0
    for m in [*breaks, None]:
        stop = len(text) if m is None else m.start()
        s, e = _strip_span(text, pos, stop)
        if s < e:
            spans.append((s, e))
        if m is not None:
            pos = m.end()
    return spans


def _sentencex_cuts(segment: str, lang: str) -> list[int]:
    """Sentence end offsets within segment as sentencex sees them, mapped robustly to exact offsets."""
    try:
        found = sentencex.get_sentence_boundaries(lang, segment)
    except Exception:  # unencodable text (lone surrogates) or a library failure: no cuts
        return []
    cuts: list[int] = []
    cursor = 0
    for item in found:
        piece = item.get("text", "") if isinstance(item, dict) else ""
        s, e = item.get("start_index", -1), item.get("end_index", -1)
        if not (isinstance(s, int) and isinstance(e, int) and cursor <= s <= e <= len(segment)) or (
            segment[s:e] != piece
        ):
            # Offsets disagree with the text: find the (stripped) sentence from the cursor on.
            needle = piece.strip() if isinstance(piece, str) else ""
            pos = segment.find(needle, cursor) if needle else -1
            if pos < 0:
                break
            e = pos + len(needle)
        cuts.append(e)
        cursor = e
    return cuts


def _is_combining(ch: str) -> bool:
    return (
        unicodedata.combining(ch) > 0
        or unicodedata.category(ch) in ("Mn", "Me", "Mc")
        or ch in "\u200c\u200d"
    )


def sentence_spans(text: str, start: int, end: int, language: str | None) -> list[tuple[int, int]]:
    """Sentence spans of text[start:end] (one paragraph), stripped, covering all its non-space text."""
    segment = text[start:end]
    repaired = _repaired_cuts(segment, _candidate_cuts(segment, _sentencex_language(language)))
    spans = []
    pos = 0
    for c in [*sorted(repaired), len(segment)]:
        s, e = _strip_span(segment, pos, c)
        if s < e:
            spans.append((start + s, start + e))
        pos = max(pos, c)
    return spans


def _sentencex_language(language: str | None) -> str:
    """The language sentencex segments with: the primary subtag, or "en" when unknown."""
    lang = primary_subtag(language) if language else "en"
    if not lang.isalpha() or lang == "und":
        lang = "en"
    return lang


LONG_SENTENCE_CHARS = 400
"""A sentence longer than this is checked for plain sentence ends sentencex passed over (quotes)."""
_PLAIN_END = regex.compile(r"([.!?。！？][\"”’»]?)\s+(?=[\"“«„]?[\p{Lu}\p{N}])")


def _candidate_cuts(segment: str, lang: str) -> set[int]:
    """sentencex's cuts, plus every line break before a line that does not start in lower case,
    plus the plain sentence ends inside a "sentence" longer than LONG_SENTENCE_CHARS."""
    cuts = set(_sentencex_cuts(segment, lang))
    for m in _LINE_BREAK.finditer(segment):
        nxt = segment[m.end() : m.end() + 1]
        if nxt and not nxt.islower():
            cuts.add(m.start())
    return cuts | _long_sentence_cuts(segment, cuts)


def _long_sentence_cuts(segment: str, cuts: set[int]) -> set[int]:
    """Sentence ends inside runs longer than LONG_SENTENCE_CHARS between `cuts`.

    sentencex never cuts inside quotation marks, so one unbalanced quote (a lost opening mark, a
    quote closed only paragraphs later) makes the rest of a paragraph one "sentence" (WMT22 news:
    19 of 521 articles, runs of over 1,000 characters). Inside such a run, a terminal mark (and any
    closing quote) followed by space and a capital or a digit ends a sentence, unless the word
    before it looks like an abbreviation (one to three letters starting with a capital, or dotted).
    """
    out: set[int] = set()
    bounds = [0, *sorted(c for c in cuts if 0 < c < len(segment)), len(segment)]
    for a, b in itertools.pairwise(bounds):
        if b - a <= LONG_SENTENCE_CHARS:
            continue
        for m in _PLAIN_END.finditer(segment, a, b):
            before = segment[a : m.start()].rsplit(None, 1)
            w = before[-1] if before else ""
            if "." in w or (len(w) <= 3 and w[:1].isupper() and w.isalpha()):
                continue
            out.add(m.end(1))
    return out


def _is_false_cut(segment: str, c: int) -> bool:
    """True when a cut at c is inside a token ("5.5", "a.b?c=1") or follows an abbreviation."""
    prev, nxt = segment[c - 1], segment[c]
    if (
        not prev.isspace()
        and not nxt.isspace()
        and prev in _IN_TOKEN_PUNCT
        and (nxt.isalnum() or nxt in "/?=&#%_-~")
    ):
        return True
    j, k = c, c
    while j > 0 and segment[j - 1].isspace():
        j -= 1
    while k < len(segment) and segment[k].isspace():
        k += 1
    # "5,5 δισ. δολάρια": an abbreviation, as a sentence does not start in lower case
    return j > 0 and segment[j - 1] == "." and k < len(segment) and segment[k].islower()


def _repaired_cuts(segment: str, cuts: set[int]) -> set[int]:
    """The inner cuts that are real sentence ends, each moved past any footnote markers after it."""
    repaired: set[int] = set()
    for c in sorted(cuts):
        if c <= 0 or c >= len(segment):
            continue
        if _is_false_cut(segment, c):
            continue
        foot = _FOOTNOTES.match(segment, c)
        repaired.add(c if foot is None else foot.end())
    return repaired


def _space_separated_script(s: str) -> bool:
    """True when most letters are Thai, Lao, Khmer or Burmese (scripts whose spaces end clauses)."""
    hits = letters = 0
    for ch in s[:2000]:
        if ch.isalpha():
            letters += 1
            o = ord(ch)
            if any(lo <= o <= hi for lo, hi in _SPACE_SEPARATED_SCRIPTS):
                hits += 1
    return letters > 0 and hits * 2 >= letters


def _char_cuts(text: str, start: int, end: int, pieces: int) -> list[tuple[int, int]]:
    """text[start:end] cut into about `pieces` equal spans, avoiding cuts before combining marks."""
    n = end - start
    pieces = max(2, min(pieces, n))
    for keep_graphemes in (True, False):
        bounds = [start]
        for k in range(1, pieces):
            c = max(start + (n * k) // pieces, bounds[-1] + 1)
            while keep_graphemes and c < end and _is_combining(text[c]):
                c += 1
            if c >= end:
                break
            bounds.append(c)
        bounds.append(end)
        if len(bounds) > 2:
            break
    return list(itertools.pairwise(bounds))


class _Counter:
    """Counts tokens of spans of one text in batches; knows the per-passage overhead."""

    def __init__(self, text: str, count_tokens: CountTokens) -> None:
        self.text = text
        self.count_tokens = count_tokens
        self.overhead = 0
        self.calls = 0

    def count(self, spans: list[tuple[int, int]], extra: list[str] | None = None) -> list[int]:
        """Counts of the extra texts, then of the spans, from one count_tokens call."""
        texts = [*(extra or []), *(self.text[s:e] for s, e in spans)]
        if not texts:
            return []
        self.calls += 1
        counts = [int(x) for x in self.count_tokens(texts)]
        if len(counts) != len(texts):
            raise ValueError(f"count_tokens returned {len(counts)} counts for {len(texts)} texts")
        return counts


def _word_groups(text: str, start: int, end: int, pieces: int) -> list[tuple[int, int]]:
    """text[start:end] cut at whitespace into about `pieces` groups of words of similar length."""
    words = [(m.start(), m.end()) for m in _NON_SPACE.finditer(text, start, end)]
    if len(words) < 2:
        return []
    width = (end - start) / max(2, min(pieces, len(words)))
    groups: list[tuple[int, int]] = []
    first = words[0][0]
    for (_, e), nxt in zip(words, [*words[1:], None], strict=True):
        if nxt is None or e - first >= width:
            groups.append((first, e))
            if nxt is not None:
                first = nxt[0]
    if len(groups) < 2:  # one long word dominates: cut between every word instead
        return words
    return groups


def _fit_units(
    units: list[_Unit], counter: _Counter, limit_of: Callable[[_Unit], int], target: int, max_tokens: int
) -> list[_Unit]:
    """Units above their limit cut at whitespace (else by characters) into pieces of about a
    quarter of the target, counted in one batch per round, until every piece fits."""
    text = counter.text
    piece_room = max(1, (target - counter.overhead) // 4)
    out = list(units)
    while True:
        over = [i for i, u in enumerate(out) if u.tokens > limit_of(u)]
        if not over:
            return out
        fresh: list[_Unit] = []
        swap: dict[int, list[_Unit]] = {}
        for i in over:
            u = out[i]
            n = math.ceil(max(1, u.tokens - counter.overhead) / piece_room)
            spans = _word_groups(text, u.start, u.end, n) or _char_cuts(text, u.start, u.end, n)
            if len(spans) < 2:
                if u.tokens <= max_tokens:
                    continue  # cannot be cut further; it fits the hard limit
                raise ValueError(f"max_tokens={max_tokens} is too small for {text[u.start : u.end]!r}")
            swap[i] = [_Unit(s, e, u.para) for s, e in spans]
            fresh.extend(swap[i])
        if not fresh:
            return out
        for p, c in zip(fresh, counter.count([(p.start, p.end) for p in fresh]), strict=True):
            p.tokens = c
        out = [q for i, u in enumerate(out) for q in swap.get(i, [u])]


def _whole_paragraphs(
    units: list[_Unit], counter: _Counter, overhead: int, target: int, max_tokens: int
) -> list[_Unit]:
    """Merge the sentences of each paragraph of at most WHOLE_PARAGRAPH x target tokens into one unit."""
    room = max(1, target - overhead)
    limit = min(int(room * WHOLE_PARAGRAPH), max_tokens - overhead)
    runs = [list(group) for _, group in itertools.groupby(units, key=lambda u: u.para)]
    candidates = [
        i
        for i, run in enumerate(runs)
        if len(run) > 1
        and sum(max(1, u.tokens - overhead) for u in run) + JOIN_TOKENS * (len(run) - 1) <= limit
    ]
    exact = counter.count([(runs[i][0].start, runs[i][-1].end) for i in candidates]) if candidates else []
    for i, tokens in zip(candidates, exact, strict=True):
        if tokens - overhead <= limit:
            runs[i] = [_Unit(runs[i][0].start, runs[i][-1].end, runs[i][0].para, tokens)]
    return [u for run in runs for u in run]


def _pack(units: list[_Unit], overhead: int, target: int, max_tokens: int) -> list[list[_Unit]]:
    """Group consecutive units into passages by dynamic programming over estimated sizes.

    A passage costs its squared distance to the target (overshoot weighs OVERSHOOT_WEIGHT) plus a penalty of
    (target/2)^2 per paragraph break inside it, so passages come out few and even, and a
    paragraph break is crossed only to absorb paragraphs smaller than about half the target. A
    passage inside one paragraph may exceed the target by OVERSHOOT rather than leave a short
    orphan; one that crosses a paragraph break may not exceed it. One unit is always a passage.
    """
    room = max(1, target - overhead)
    cap = min(int(room * OVERSHOOT), max(room, max_tokens - overhead))
    penalty = room * room / 2
    n = len(units)
    prefix = [0]
    for u in units:
        prefix.append(prefix[-1] + max(1, u.tokens - overhead) + JOIN_TOKENS)
    best = [0.0] + [math.inf] * n
    back = [0] * (n + 1)
    for i in range(1, n + 1):
        last_para = units[i - 1].para
        for j in range(i - 1, max(-1, i - 1 - MAX_UNITS_PER_PASSAGE), -1):
            size = prefix[i] - prefix[j] - JOIN_TOKENS
            breaks = last_para - units[j].para
            if j < i - 1 and (size > cap or (breaks and size > room)):
                break
            c = (
                best[j]
                + penalty * breaks
                + ((room - size) ** 2 if size <= room else OVERSHOOT_WEIGHT * (size - room) ** 2)
            )
            if c < best[i]:
                best[i], back[i] = c, j
    groups: list[list[_Unit]] = []
    i = n
    while i > 0:
        groups.append(units[back[i] : i])
        i = back[i]
    return groups[::-1]


def _split_in_two(p: _Passage, overhead: int) -> tuple[_Passage, _Passage]:
    """Cut a passage's new units where the estimated sizes of both halves are closest."""
    units = p.units[p.n_overlap :]
    if len(units) < 2:
        raise ValueError("count_tokens is inconsistent: a single sentence counted differently twice")
    share = [max(1, u.tokens - overhead) + JOIN_TOKENS for u in units]
    total = sum(share)
    best, acc, cut = math.inf, 0, 1
    for i in range(1, len(units)):
        acc += share[i - 1]
        if abs(total - 2 * acc) < best:
            best, cut = abs(total - 2 * acc), i
    return _Passage(units[:cut]), _Passage(units[cut:])


def _settle(passages: list[_Passage]) -> None:
    """Drop overlap that would start a passage where the one before starts; note known counts."""
    for i, p in enumerate(passages):
        while i and p.n_overlap and p.units[0].start <= passages[i - 1].units[0].start:
            p.units, p.n_overlap, p.tokens = p.units[1:], p.n_overlap - 1, -1
        if len(p.units) == 1:
            p.tokens = p.units[0].tokens


def split_passages(
    text: str,
    count_tokens: CountTokens,
    *,
    language: str | None,
    target_tokens: int = 200,
    max_tokens: int = 512,
    overlap_sentences: int = 0,
) -> list[PassageSpan]:
    """Split text into sentence-aligned passages of about target_tokens, each within max_tokens.

    count_tokens counts a batch of texts as the model sees each passage (prompt and special
    tokens included): a passage fits iff its count <= max_tokens.
    """
    _check_sizes(target_tokens, max_tokens, overlap_sentences)
    target = min(target_tokens, max_tokens)
    spans = _sentence_spans_by_paragraph(text, language)
    if not spans:
        return []
    counter = _Counter(text, count_tokens)
    counts = counter.count([(s, e) for s, e, _ in spans], extra=[""])
    counter.overhead = overhead = counts[0]
    if overhead >= max_tokens:
        raise ValueError(f"max_tokens={max_tokens} leaves no room for text (the prompt alone has {overhead})")
    units = [_Unit(s, e, para, c) for (s, e, para), c in zip(spans, counts[1:], strict=True)]

    def limit_of(u: _Unit) -> int:
        if u.tokens > target and _space_separated_script(text[u.start : u.end]):
            return target
        return max_tokens

    units = _fit_units(units, counter, limit_of, target, max_tokens)
    units = _whole_paragraphs(units, counter, overhead, target, max_tokens)
    passages = [_Passage(run) for run in _pack(units, overhead, target, max_tokens)]
    if overlap_sentences:
        _add_overlap(passages, overlap_sentences)
    passages = _count_until_fit(passages, counter, max_tokens, overhead)
    return [
        PassageSpan(text[p.units[0].start : p.units[-1].end], p.units[0].start, p.units[-1].end, p.tokens)
        for p in passages
    ]


def _check_sizes(target_tokens: int, max_tokens: int, overlap_sentences: int) -> None:
    """ValueError unless the token sizes are positive and the overlap is not negative."""
    if max_tokens < 1 or target_tokens < 1:
        raise ValueError("target_tokens and max_tokens must be positive")
    if overlap_sentences < 0:
        raise ValueError("overlap_sentences must be >= 0")


def _sentence_spans_by_paragraph(text: str, language: str | None) -> list[tuple[int, int, int]]:
    """(start, end, paragraph number) of every sentence of text, in order."""
    spans: list[tuple[int, int, int]] = []
    for para, (ps, pe) in enumerate(_paragraphs(text)):
        spans.extend((s, e, para) for s, e in sentence_spans(text, ps, pe, language))
    return spans


def _add_overlap(passages: list[_Passage], overlap_sentences: int) -> None:
    """Prefix each passage with up to overlap_sentences last units of the one before, same paragraph only."""
    for i in range(1, len(passages)):
        prev, cur = passages[i - 1].units, passages[i].units
        extra = [u for u in prev[1:][-overlap_sentences:] if u.para == cur[0].para]
        passages[i] = _Passage([*extra, *cur], n_overlap=len(extra))


def _count_until_fit(
    passages: list[_Passage], counter: _Counter, max_tokens: int, overhead: int
) -> list[_Passage]:
    """Count the passages in batches, shrinking any above max_tokens, until every one fits."""
    while True:
        _settle(passages)
        unknown = [p for p in passages if p.tokens < 0]
        spans_ = [(p.units[0].start, p.units[-1].end) for p in unknown]
        for p, c in zip(unknown, counter.count(spans_), strict=True):
            p.tokens = c
        if all(p.tokens <= max_tokens for p in passages):
            return passages
        passages = _shrink_over_long(passages, max_tokens, overhead)


def _shrink_over_long(passages: list[_Passage], max_tokens: int, overhead: int) -> list[_Passage]:
    """Passages above max_tokens lose one unit of overlap, or are cut in two when they have none."""
    fixed: list[_Passage] = []
    for p in passages:
        if p.tokens <= max_tokens:
            fixed.append(p)
        elif p.n_overlap:
            fixed.append(_Passage(p.units[1:], n_overlap=p.n_overlap - 1))
        else:
            fixed.extend(_split_in_two(p, overhead))
    return fixed


def sentences(text: str, language: str | None) -> list[tuple[int, int]]:
    """[start, end) of every sentence of `text` (paragraphs first), stripped; the whole text if none."""
    out = [s for p_start, p_end in _paragraphs(text) for s in sentence_spans(text, p_start, p_end, language)]
    return out or [(0, len(text))]
