"""Sentence vectors: written, replaced, deleted, rebuilt and repaired with their passages; they pick
the passage shown and the highlight."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from citesearch.embeddings import Embedder
from citesearch.index import search
from citesearch.index.articles import ArticleInput
from citesearch.index.search import SearchQuery
from citesearch.index.service import IndexConfig, SearchService
from citesearch.index.splitter import sentences
from citesearch.index.store import Sentences
from citesearch.index.writes import MIN_SENTENCE_CHARS, sentence_units
from tests.fakes import FakeEncoder

REPORT = ArticleInput(
    id="council",
    title="Council report",
    language="en",
    text=(
        "The city council met on Monday to debate the harbour budget. Members argued for hours.\n\n"
        "Ok. The harbour budget was approved with 31 votes in favour and 9 against after a long debate.\n\n"
        "The mayor thanked the members for their patience. A new vote on schools is planned for March."
    ),
)

NVIDIA = ArticleInput(
    id="nvidia-h20",
    title="Nvidia denies H20 chips have backdoors",
    language="en",
    text=(
        "Nvidia said on Thursday that its H20 chips contain no backdoors that would allow remote access or "
        "control, after China's cyberspace regulator summoned the company over security concerns. The company "
        "said cybersecurity is critically important to it.\n\n"
        "The Cyberspace Administration of China asked Nvidia to explain and submit documents on the security "
        "risks of the H20, citing laws on cybersecurity and data protection. US lawmakers had proposed "
        "requiring tracking features in advanced chips sold abroad.\n\n"
        "Nvidia said in its quarterly filing that the export controls imposed in April had cost it about "
        "$5.5 billion in charges on unsold H20 inventory. Sales of the chip to China resumed in July after "
        "Washington granted licences.\n\n"
        "The company's shares rose 2% in New York trading on the day. Analysts at Bernstein estimate that "
        "China accounted for 13% of Nvidia's revenue in the last fiscal year."
    ),
)


def _open(path: Path, encoder: FakeEncoder | Embedder, **config: object) -> SearchService:
    return SearchService(IndexConfig(data_dir=path, **config), encoder)  # type: ignore[arg-type]


def _all_sentences(svc: SearchService) -> dict[int, Sentences]:
    return svc.store.passage_sentences(svc.store.passage_ids(svc.state.generation).tolist())


def test_a_short_sentence_shares_its_neighbours_vector() -> None:
    text = (
        "Ok. The harbour budget was approved with 31 votes. He left. Members then argued about it for hours."
    )
    units = sentence_units(text, 0, len(text), "en")
    assert [text[b:e] for b, e in units] == [
        "Ok. The harbour budget was approved with 31 votes.",
        "He left. Members then argued about it for hours.",
    ]
    tail = "The harbour budget was approved with 31 votes. He left."
    assert [tail[b:e] for b, e in sentence_units(tail, 0, len(tail), "en")] == [tail]
    assert all(e - b >= MIN_SENTENCE_CHARS for b, e in units)
    # Offsets are into the article, not the passage.
    assert sentence_units("xx " + text, 3, 3 + len(text), "en")[0] == (3, 3 + units[0][1])


def test_sentences_are_written_replaced_rebuilt_and_deleted_with_their_passages(tmp_path: Path) -> None:
    enc = FakeEncoder()
    svc = _open(tmp_path / "data", enc, target_tokens=24, max_passage_tokens=64)
    try:
        svc.upsert([REPORT])
        row, passages = svc.get_article("council")
        assert len(passages) == 3
        got = _all_sentences(svc)
        assert got.keys() == {p.id for p in passages}
        for p in passages:
            s = got[p.id]
            units = sentence_units(row.text, p.char_start, p.char_end, "en")
            assert [tuple(x) for x in s.spans.tolist()] == units
            expected = np.stack([enc.vector(row.text[b:e]) for b, e in units])
            assert np.allclose(s.vectors, expected, atol=1e-6)
        assert len(got[passages[0].id]) == 2  # two sentences, each its own vector
        assert svc.stats().sentences == sum(len(s) for s in got.values())

        svc.upsert(
            [REPORT.model_copy(update={"text": "A short replacement text about the harbour budget vote."})]
        )
        after = _all_sentences(svc)
        assert not after.keys() & got.keys()
        assert svc.stats().sentences == sum(len(s) for s in after.values()) == 1

        svc.upsert([REPORT.model_copy(update={"id": "council-2"})])
        before = svc.stats().sentences
        gen = svc.state.generation
        svc.reindex()
        assert svc.state.generation == gen + 1
        assert svc.stats().sentences == before == sum(len(s) for s in _all_sentences(svc).values())

        svc.delete("council")
        svc.delete("council-2")
        assert svc.stats().sentences == 0
    finally:
        svc.close()


def test_passages_stored_without_sentences_are_embedded_again_at_start_up(tmp_path: Path) -> None:
    """A store written before sentence vectors existed (or a hand-edited one) is completed by repair."""
    data = tmp_path / "data"
    svc = _open(data, FakeEncoder(), target_tokens=24, max_passage_tokens=64)
    svc.upsert([REPORT, REPORT.model_copy(update={"id": "other"})])
    n = svc.stats().sentences
    svc.close()
    with sqlite3.connect(data / "store.sqlite") as conn:
        conn.execute("UPDATE passages SET sentences = NULL, n_sentences = 0 WHERE article_id = 'council'")
    svc = _open(data, FakeEncoder(), target_tokens=24, max_passage_tokens=64)
    try:
        assert svc.stats().sentences == n
        assert len(_all_sentences(svc)) == svc.stats().passages
    finally:
        svc.close()


def test_switched_off_each_passage_is_its_own_sentence(tmp_path: Path) -> None:
    enc = FakeEncoder()
    svc = _open(tmp_path / "data", enc, target_tokens=24, max_passage_tokens=64, sentence_vectors=False)
    try:
        svc.upsert([REPORT])
        assert sum(n for kind, n in enc.calls if kind == "passages") == 3
        got = _all_sentences(svc)
        for p in svc.get_article("council")[1]:
            assert got[p.id].spans.tolist() == [[p.char_start, p.char_end]]
    finally:
        svc.close()


@pytest.fixture(scope="module")
def nvidia(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[SearchService]:
    svc = _open(tmp_path_factory.mktemp("sentences") / "data", embedder, target_tokens=64)
    try:
        svc.upsert([NVIDIA])
        assert len(svc.get_article("nvidia-h20")[1]) == 4, "one passage per paragraph"
        yield svc
    finally:
        svc.close()


@pytest.mark.parametrize(
    ("question", "answer"),
    [
        ("How much did the export controls cost Nvidia?", "$5.5 billion"),
        ("英伟达因为出口管制损失了多少钱？", "$5.5 billion"),
        ("What share of Nvidia's revenue came from China?", "13%"),
        ("Wann wurde der Verkauf des Chips nach China wieder aufgenommen?", "July"),
    ],
)
def test_the_passage_shown_is_the_one_that_answers(nvidia: SearchService, question: str, answer: str) -> None:
    """One passage per article (the API default): not the lead, but the paragraph with the figure,
    and its highlight is the sentence that holds it."""
    hit = nvidia.search(SearchQuery(text=question, top_k=1)).hits[0]
    assert answer in hit.passage.text
    assert answer in hit.highlight.text
    assert hit.highlight.text in [hit.passage.text[b:e] for b, e in sentences(hit.passage.text, "en")]
    article = nvidia.get_article("nvidia-h20")[0].text
    assert article[hit.highlight.char_start : hit.highlight.char_end] == hit.highlight.text


@pytest.mark.parametrize(
    "question", ["英伟达的H20芯片有后门吗？", "What share of Nvidia's revenue came from China?"]
)
def test_the_highlight_score_is_the_cosine_of_the_question_and_the_sentence(
    nvidia: SearchService, embedder: Embedder, question: str
) -> None:
    """The answer threshold (api/answer.py) was calibrated on the cosine of the question with the
    sentence encoded on its own; the stored vector's inner product must be that same number."""
    hits = nvidia.search(SearchQuery(text=question, top_k=3, per_article=3)).hits
    texts = [h.highlight.text for h in hits]
    cosines = embedder.encode_passages(texts) @ embedder.encode_queries([question])[0]
    # Stored vectors come from batches, these from other shapes: int8 arithmetic moves with the
    # shape by up to ~0.002 (the answer threshold's steps are 0.01), float by under 0.001.
    tol = 3e-3 if embedder.precision == "int8" else 1e-3
    for hit, cosine in zip(hits, cosines, strict=True):
        assert hit.highlight.score == pytest.approx(float(cosine), abs=tol)
    lexical = nvidia.search(SearchQuery(text=question, top_k=1, highlight="lexical")).hits[0]
    assert lexical.highlight.score is None


def test_a_semantic_search_encodes_the_question_only(tmp_path: Path) -> None:
    """Highlights and their scores come from stored vectors: one model call per question."""
    encoder = FakeEncoder()
    svc = _open(tmp_path / "data", encoder)
    try:
        svc.upsert([NVIDIA, REPORT])
        encoder.calls.clear()
        hits = svc.search(SearchQuery(text="harbour budget votes", top_k=3, per_article=3)).hits
        assert hits and all(h.highlight.score is not None for h in hits)
        assert encoder.calls == [("queries", 1)]
    finally:
        svc.close()


def test_bm25_sharpens_a_search_where_one_language_is_in_play(
    nvidia: SearchService, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A one-language hybrid search adds TERM_WEIGHT times each passage's BM25 over the best one."""
    question = "How much did the export controls cost Nvidia in charges?"
    query = SearchQuery(text=question, top_k=4, per_article=4)
    qvec = embedder.encode_queries([question])[0]
    hits = nvidia.search(query, query_vector=qvec).hits
    with_terms = {h.passage.id: h.score for h in hits}
    bm25 = {h.passage.id: h.lexical_score or 0.0 for h in hits}
    weight = search.TERM_WEIGHT
    monkeypatch.setattr(search, "TERM_WEIGHT", 0.0)
    without = {h.passage.id: h.score for h in nvidia.search(query, query_vector=qvec).hits}
    assert set(with_terms) == set(without) and len(hits) == 4, "every passage of the article"
    top = max(bm25.values())
    assert top > 0 and weight > 0
    for pid, s in with_terms.items():
        assert s - without[pid] == pytest.approx(weight * bm25[pid] / top, abs=2e-6)
    assert [h.score for h in hits] == sorted(with_terms.values(), reverse=True)


def test_bm25_does_not_sharpen_across_languages(
    tmp_path: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a German article beside the English one the search is language-fair: BM25 keeps to fuse."""
    german = ArticleInput(
        id="de-chips",
        title="Chips",
        language="de",
        text="Nvidia verkauft wieder H20 Chips nach China, nachdem Washington Lizenzen erteilt hat.",
    )
    svc = _open(tmp_path / "data", embedder, target_tokens=64)
    try:
        svc.upsert([NVIDIA, german])
        question = "How much did the export controls cost Nvidia in charges?"
        query = SearchQuery(text=question, top_k=5, per_article=5)
        qvec = embedder.encode_queries([question])[0]
        scores = [(h.passage.id, h.score) for h in svc.search(query, query_vector=qvec).hits]
        monkeypatch.setattr(search, "TERM_WEIGHT", 0.0)
        assert [(h.passage.id, h.score) for h in svc.search(query, query_vector=qvec).hits] == scores
    finally:
        svc.close()
