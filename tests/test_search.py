"""Search quality behaviour with the real model: fairness, modes, highlights, filters, pagination."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from citesearch.embeddings import Embedder
from citesearch.index.articles import ArticleInput
from citesearch.index.fairness import load_reference
from citesearch.index.lexical import LEXICAL_VERSION, terms
from citesearch.index.search import (
    EVIDENCE_ARTICLES,
    SENTENCE_WEIGHT,
    HighlightMode,
    SearchOutcome,
    SearchQuery,
)
from citesearch.index.service import IndexConfig, SearchService
from citesearch.index.store import Filters
from tests.fakes import FakeEncoder

BRIDGE = ArticleInput(
    id="en-bridge",
    title="Golden Gate",
    language="en",
    source="wire",
    published_at="2024-05-01",
    text=(
        "The Golden Gate Bridge is a suspension bridge spanning the strait that connects San Francisco "
        "Bay to the Pacific Ocean. Construction began in January 1933 and the bridge opened to traffic "
        "in May 1937. Its chief engineer was Joseph Strauss, and its towers rise 227 metres above the water."
    ),
)
# Chinese news on other subjects: same-language distractors for a Chinese question about the bridge.
CHINESE = {
    "zh-tea": "中国茶文化历史悠久。绿茶主要产于浙江和安徽，每年春天采摘新茶。许多城市都有传统茶馆，人们在那里聊天和下棋。",
    "zh-rail": "高速铁路网络在过去十年迅速扩展。北京到上海的高铁全程约四个半小时，每天有数十趟列车往返。",
    "zh-market": "股市今天上涨了百分之二。投资者对新的经济数据感到乐观，科技股领涨。",
    "zh-weather": "气象台发布暴雨预警，预计周末南方多地将有强降雨。市民出行需注意安全。",
    "zh-museum": "故宫博物院每年接待游客超过一千万人次。馆内收藏了大量明清两代的珍贵文物。",
}
GERMAN = ArticleInput(
    id="de-football",
    title="Pokalfinale",
    language="de",
    source="sport",
    published_at="2025-03-02",
    text="Der Verein gewann das Pokalfinale mit 2:1. Die Fans feierten bis spät in die Nacht auf dem Marktplatz.",
)


def chinese_inputs() -> list[ArticleInput]:
    return [
        ArticleInput(id=k, title="新闻", text=v, language="zh", source="zh-wire", published_at="2025-01-01")
        for k, v in CHINESE.items()
    ]


def english_filler(n: int) -> list[ArticleInput]:
    """Short English articles about bridges and cities: many near-ties for pagination and filters."""
    return [
        ArticleInput(
            id=f"filler-{i:02d}",
            title=f"City note {i}",
            language="en",
            source="a" if i % 2 else "b",
            published_at=f"2024-01-{i + 1:02d}",
            text=(
                f"Bridge number {i} in the old town was repaired this year. "
                f"The council said {i * 3} workers took part and traffic returned to normal."
            ),
        )
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[SearchService]:
    """One read-only corpus for most tests: the bridge, Chinese distractors, German sport, English fillers."""
    svc = SearchService(IndexConfig(data_dir=tmp_path_factory.mktemp("search") / "data"), embedder)
    svc.upsert([BRIDGE, *chinese_inputs(), GERMAN, *english_filler(14)])
    try:
        yield svc
    finally:
        svc.close()


def rank_of(out: SearchOutcome, article_id: str) -> int | None:
    return next((h.rank for h in out.hits if h.passage.article_id == article_id), None)


def test_chinese_question_finds_english_answer_only_with_fairness(embedder: Embedder, tmp_path: Path) -> None:
    svc = SearchService(IndexConfig(data_dir=tmp_path / "data"), embedder)
    try:
        svc.upsert([BRIDGE, *chinese_inputs()])
        for question in ("金门大桥是哪一年通车的？", "金门大桥的总工程师是谁？"):
            fair = svc.search(SearchQuery(text=question, top_k=6))
            assert fair.query_language == "zh"
            assert fair.hits[0].passage.article_id == "en-bridge"
            unfair = svc.search(SearchQuery(text=question, top_k=6, fairness=False))
            # Without fairness every Chinese article, whatever it says, outranks the English answer.
            assert rank_of(unfair, "en-bridge") == 6
    finally:
        svc.close()


def test_fair_scores_are_exact_cosines_of_centred_projected_vectors(service: SearchService) -> None:
    """FAISS with per-language offsets plus candidate rescoring equals the brute-force fair score."""
    from citesearch.index.fairness import identify_query_language, prepare_query

    question = "金门大桥的塔有多高？"
    out = service.search(SearchQuery(text=question, top_k=50, mode="dense", per_article=20))
    st = service.state
    qvec = st.embedder.encode_queries([question])[0]
    ref = load_reference(st.embedder.model_id, st.vectors.dim)
    assert ref is not None, "the default model ships a reference language table"
    lang = identify_query_language(question, qvec, st.means, ref)[0]
    fq = prepare_query(qvec, lang, st.means, st.vectors.lang_slots, ref)
    ids, vecs, langs = next(service.store.iter_vectors(st.generation))
    brute = fq.rescore(vecs, langs)
    by_id = dict(zip(ids.tolist(), brute.tolist(), strict=True))
    # Every passage of the corpus is returned, ranked by its fair score and its best sentence's,
    # the sentences scored like the passages (the same centring, projection and renormalisation).
    sents = service.store.passage_sentences(ids.tolist())
    assert len(out.hits) == len(ids) and sents.keys() == set(ids.tolist())
    lang_of = dict(zip(ids.tolist(), langs, strict=True))
    for h in out.hits:
        pid = h.passage.id
        best = float(np.max(fq.rescore(sents[pid].vectors, [lang_of[pid]] * len(sents[pid]))))
        assert h.dense_score == pytest.approx(by_id[pid], abs=1e-5)
        assert h.score == pytest.approx((1 - SENTENCE_WEIGHT) * by_id[pid] + SENTENCE_WEIGHT * best, abs=1e-5)
    # Sentence evidence reorders whole tiers of EVIDENCE_ARTICLES articles (so pages agree): scores
    # descend inside each tier, and the tiers follow the passage-level (fused) order of their articles.
    tier: dict[str, int] = {}
    for h in service.search(SearchQuery(text=question, top_k=50, mode="dense", per_article=1)).hits:
        tier.setdefault(h.passage.article_id, len(tier) // EVIDENCE_ARTICLES)
    tiers = [tier[h.passage.article_id] for h in out.hits]
    assert tiers == sorted(tiers) and max(tiers) >= 1
    for t in set(tiers):
        scores = [h.score for h, ht in zip(out.hits, tiers, strict=True) if ht == t]
        assert scores == sorted(scores, reverse=True)


def test_means_follow_writes_and_deletes(embedder: Embedder, tmp_path: Path) -> None:
    svc = SearchService(IndexConfig(data_dir=tmp_path / "data"), embedder)
    try:
        svc.upsert([BRIDGE, GERMAN, *chinese_inputs()[:2]])
        means = svc.state.means
        assert set(means.counts) == {"en", "de", "zh"}
        n_zh = means.counts["zh"]
        svc.delete("de-football")
        assert set(svc.state.means.counts) == {"en", "zh"}
        assert "de" not in svc.state.means.means
        assert "de" not in svc.stats().languages
        # An update that changes an article's language moves its passages between the means.
        svc.upsert(
            [ArticleInput(id="zh-tea", title="Tea", text="Green tea is picked every spring.", language="en")]
        )
        assert svc.state.means.counts["zh"] < n_zh
        for art in ("zh-rail", "zh-tea"):
            svc.delete(art)
        assert set(svc.state.means.counts) == {"en"}
        # The sums are exact: after deleting everything but the bridge, the English mean is its passages' mean.
        ids, vecs, _ = next(svc.store.iter_vectors(svc.state.generation))
        from citesearch.index.fairness import PRIOR_WEIGHT

        g = vecs.mean(axis=0)
        want = (vecs.sum(axis=0) + PRIOR_WEIGHT * g) / (len(ids) + PRIOR_WEIGHT)
        np.testing.assert_allclose(svc.state.means.means["en"], want, atol=1e-5)
    finally:
        svc.close()
    # Reopening recomputes the same means from the store of record.
    again = SearchService(IndexConfig(data_dir=tmp_path / "data"), embedder)
    try:
        assert set(again.state.means.counts) == {"en"}
    finally:
        again.close()


def test_question_in_a_language_absent_from_the_corpus(service: SearchService) -> None:
    for question in (
        "Wann wurde die Golden Gate Bridge für den Verkehr geöffnet?",  # German is in the corpus
        "Golden Gate Köprüsü'nün baş mühendisi kimdi?",  # Turkish is not
        "¿Quién fue el ingeniero jefe del puente Golden Gate?",  # nor Spanish
    ):
        out = service.search(SearchQuery(text=question, top_k=3))
        assert out.hits and out.hits[0].passage.article_id == "en-bridge", question
    out = service.search(SearchQuery(text="Golden Gate Köprüsü'nün baş mühendisi kimdi?", top_k=3))
    assert out.query_language == "tr"


def test_modes_differ_sensibly(service: SearchService) -> None:
    zh = "金门大桥的总工程师是谁？"
    dense = service.search(SearchQuery(text=zh, top_k=5, mode="dense"))
    lexical = service.search(SearchQuery(text=zh, top_k=5, mode="lexical"))
    hybrid = service.search(SearchQuery(text=zh, top_k=5, mode="hybrid"))
    # BM25 cannot match a Chinese question to an English passage; dense and hybrid can.
    assert rank_of(lexical, "en-bridge") is None
    assert rank_of(dense, "en-bridge") == 1 and rank_of(hybrid, "en-bridge") == 1
    # Lexical evidence only reorders passages of the question's language: every other-language hit
    # keeps the rank dense retrieval gave it.
    dense_ranks = {h.passage.id: h.rank for h in dense.hits}
    for h in hybrid.hits:
        if h.passage.language != hybrid.query_language:
            assert dense_ranks.get(h.passage.id) == h.rank
    en = "chief engineer of the Golden Gate Bridge Joseph Strauss"
    d = service.search(SearchQuery(text=en, top_k=3, mode="dense"))
    lx = service.search(SearchQuery(text=en, top_k=3, mode="lexical"))
    hy = service.search(SearchQuery(text=en, top_k=3, mode="hybrid"))
    assert hy.query_language == "en"
    assert d.hits[0].lexical_score is None and d.hits[0].dense_score is not None
    assert lx.hits[0].dense_score is None and lx.hits[0].lexical_score is not None
    assert lx.hits[0].passage.article_id == "en-bridge"
    top = hy.hits[0]
    assert top.passage.article_id == "en-bridge" and top.dense_score is not None and top.lexical_score
    # Stemming: "engineers" matches "engineer"; a word the corpus lacks matches nothing.
    assert rank_of(service.search(SearchQuery(text="engineers", mode="lexical")), "en-bridge") == 1
    assert not service.search(SearchQuery(text="xylophone", mode="lexical")).hits


def test_highlight_offsets_are_exact(service: SearchService) -> None:
    article_text = {
        a: service.get_article(a)[0].text for a in ("en-bridge", "de-football", *CHINESE, "filler-03")
    }
    queries: list[tuple[str, HighlightMode, str]] = [
        ("Who was the chief engineer of the bridge?", "lexical", "Joseph Strauss"),
        ("1937年通车的金门大桥有多长？", "lexical", "1937"),  # the number is shared across languages
        ("金门大桥的塔有多高？", "semantic", "227 metres"),  # no shared term: sentence embeddings
    ]
    for question, how, expected in queries:
        out = service.search(SearchQuery(text=question, top_k=5, highlight=how))
        top = out.hits[0]
        assert top.passage.article_id == "en-bridge"
        assert expected in top.highlight.text, (question, top.highlight.text)
        for h in out.hits:
            text = article_text.get(h.passage.article_id) or service.get_article(h.passage.article_id)[0].text
            hl = h.highlight
            assert text[hl.char_start : hl.char_end] == hl.text
            assert h.passage.char_start <= hl.char_start < hl.char_end <= h.passage.char_end
            assert hl.text == hl.text.strip() and hl.text


def test_filters_fill_top_k(service: SearchService) -> None:
    q = "When did the Golden Gate Bridge open?"
    for mode in ("hybrid", "dense", "lexical"):
        out = service.search(SearchQuery(text=q, top_k=5, mode=mode, filters=Filters(sources=("a",))))
        assert len(out.hits) == 5, mode
        assert {h.passage.source for h in out.hits} == {"a"}
    zh_only = service.search(SearchQuery(text=q, top_k=5, filters=Filters(languages=("zh",))))
    assert len(zh_only.hits) == 5 and {h.passage.language for h in zh_only.hits} == {"zh"}
    recent = service.search(
        SearchQuery(text=q, top_k=4, filters=Filters(published_after=1704067200.0 + 9 * 86400)),  # >= Jan 10
    )
    assert len(recent.hits) == 4
    assert all((h.passage.published_at or "") >= "2024-01-10" for h in recent.hits)


def test_pagination_is_stable(service: SearchService) -> None:
    q = "bridge repaired traffic workers"
    for mode in ("hybrid", "dense", "lexical"):
        whole = service.search(SearchQuery(text=q, top_k=12, mode=mode))
        pages: list[int] = []
        offset = 0
        while True:
            out = service.search(SearchQuery(text=q, top_k=4, offset=offset, mode=mode))
            assert [h.rank for h in out.hits] == list(range(offset + 1, offset + 1 + len(out.hits)))
            pages += [h.passage.id for h in out.hits]
            if not out.has_more or offset >= 8:
                break
            offset += 4
        assert pages == [h.passage.id for h in whole.hits][: len(pages)], mode
        assert len(pages) == len(set(pages)) == min(12, len(whole.hits))
        arts = [h.passage.article_id for h in whole.hits]
        assert len(arts) == len(set(arts)), "one passage per article by default"


def test_lexical_terms_are_stemmed_per_language() -> None:
    assert terms("Running nations", "en") == ["run", "nation"]
    assert terms("Die Häuser", "de") == ["die", "haus"]
    assert terms("英伟达H20芯片", "zh") == ["英伟", "伟达", "h20", "芯片"]
    assert terms("ภาษาไทย", "th") == ["ภา", "าษ", "ษา", "าไ", "ไท", "ทย"]
    assert terms("Running", None) == ["running"]  # unknown language: whole words


def test_lexical_terms_are_rewritten_when_the_scheme_changes(embedder: Embedder, tmp_path: Path) -> None:
    data = tmp_path / "data"
    svc = SearchService(IndexConfig(data_dir=data), embedder)
    svc.upsert([BRIDGE])
    svc.close()
    with sqlite3.connect(data / "store.sqlite") as conn:  # as an older release would have left it
        conn.execute("UPDATE meta SET value = 'old' WHERE key = 'lexical_version'")
        conn.execute("UPDATE passages_fts SET terms = 'stale'")
    svc = SearchService(IndexConfig(data_dir=data), embedder)
    try:
        assert svc.store.get_meta("lexical_version") == LEXICAL_VERSION
        out = svc.search(SearchQuery(text="engineers", mode="lexical"))
        assert [h.passage.article_id for h in out.hits] == ["en-bridge"]
    finally:
        svc.close()


@pytest.mark.parametrize(
    ("question", "language"),
    [
        ("When did the Golden Gate Bridge open to traffic?", None),
        ("金门大桥是哪一年通车的？", None),
        ("bridge repairs", "en"),
    ],
)
def test_lexical_run_during_encoding_gives_the_same_answer(
    service: SearchService, embedder: Embedder, question: str, language: str | None
) -> None:
    """Hybrid without a query vector runs BM25 while the encoder works; the result must not change."""
    query = SearchQuery(text=question, top_k=8, per_article=3, language=language)
    early = service.search(query)
    given = service.search(query, query_vector=embedder.encode_queries([question])[0])
    assert [(h.passage.id, h.score, h.lexical_score) for h in early.hits] == [
        (h.passage.id, h.score, h.lexical_score) for h in given.hits
    ]
    if language == "en" or question.startswith("When"):
        assert any(h.lexical_score is not None for h in early.hits)  # BM25 took part


def test_terms_in_most_passages_are_known_as_common(service: SearchService) -> None:
    """BM25 leaves out query terms found in over a third of a large corpus (cheap, near-zero IDF)."""
    bridge, engineer = terms("bridge", "en")[0], terms("Strauss", "en")[0]
    assert service.store.common_terms([bridge, engineer], 1 / 3, 0) == {bridge}
    assert service.store.common_terms([bridge, engineer], 1 / 3, 10**6) == set()  # small corpus: keep all


def test_common_terms_are_judged_within_the_language_searched(tmp_path: Path) -> None:
    """In a corpus of many languages no word is in a third of all passages; hybrid BM25 searches the
    question's language only, so a word is common when it is in a third of that language's passages."""
    svc = SearchService(IndexConfig(data_dir=tmp_path / "data"), FakeEncoder())
    try:
        svc.upsert(
            [
                ArticleInput(id=f"en-{i}", text=f"Harbour dues rose for ship {i}.", language="en")
                for i in range(3)
            ]
            + [
                ArticleInput(id=f"de-{i}", text=f"Die Hafengebühren für Schiff {i}.", language="de")
                for i in range(6)
            ]
        )
        harbour, ship = terms("harbour", "en")[0], terms("ship", "en")[0]
        store = svc.store
        assert store.common_terms([harbour, ship], 1 / 3, 0) == set()  # 3 of 9 passages: not over a third
        assert store.common_terms([harbour, ship], 1 / 3, 0, "en") == {harbour, ship}  # 3 of 3 English
        assert store.common_terms([harbour], 1 / 3, 4, "en") == set()  # 3 English passages: too few to judge
        assert store.common_terms([harbour], 1 / 3, 0, "fr") == set()  # no French passage at all
        out = svc.search(
            SearchQuery(text="harbour dues ship 2", mode="lexical", filters=Filters(languages=("en",)))
        )
        assert [h.passage.article_id for h in out.hits][:1] == ["en-2"]  # the rarest term still decides
    finally:
        svc.close()
