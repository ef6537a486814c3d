"""Pipeline logic with a small deterministic encoder: fairness, rebuild races, caps, write paths.

The real model stays in the tests where the model matters (test_embeddings, test_search, the API).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from citesearch.index.articles import ArticleInput
from citesearch.index.errors import InvalidArticleError, InvalidQueryError
from citesearch.index.search import SearchQuery
from citesearch.index.service import IndexConfig, SearchService
from citesearch.index.writes import article_from_row
from tests.fakes import FakeEncoder

ZH_QUESTION = "英伟达的H20芯片有后门吗"


class TableEncoder(FakeEncoder):
    """Returns the vector set for a text when there is one (constructed geometry), else FakeEncoder's."""

    def __init__(self, dim: int = 64) -> None:
        super().__init__(dim)
        self.table: dict[str, npt.NDArray[np.float32]] = {}

    def vector(self, text: str, language: str | None = None) -> npt.NDArray[np.float32]:
        stripped = text.strip()
        if stripped in self.table:
            v = self.table[stripped]
            return (v / np.linalg.norm(v)).astype(np.float32)
        return super().vector(text, language)


class HookedEncoder(FakeEncoder):
    """Runs `hook` once, inside the first passage pass after `armed` is set (a write landing mid-build)."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = threading.Event()
        self.hook: Callable[[], None] | None = None

    def encode_passages(self, texts: list[str]) -> npt.NDArray[np.float32]:
        if self.armed.is_set() and self.hook is not None:
            hook, self.hook = self.hook, None
            hook()
        return super().encode_passages(texts)


def _open(tmp_path: Path, encoder: FakeEncoder, **config: object) -> SearchService:
    return SearchService(IndexConfig(data_dir=tmp_path / "data", **config), encoder)  # type: ignore[arg-type]


@pytest.fixture
def fake_service(tmp_path: Path) -> Iterator[SearchService]:
    svc = _open(tmp_path, FakeEncoder())
    yield svc
    svc.close()


def test_fairness_lets_the_answer_in_another_language_outrank_a_same_language_miss(tmp_path: Path) -> None:
    """Constructed vectors: each text = its topic + a strong direction of its language."""
    rng = np.random.default_rng(7)
    enc = TableEncoder()
    lang_dir = {lang: 1.5 * rng.standard_normal(enc.dim) / np.sqrt(enc.dim) for lang in ("en", "zh")}
    topic = {name: rng.standard_normal(enc.dim) / np.sqrt(enc.dim) for name in ("h20", "other")}
    enc.table[ZH_QUESTION] = (topic["h20"] + lang_dir["zh"]).astype(np.float32)
    articles = [
        ("answer-en", "en", "NVIDIA says the H20 has no backdoor.", topic["h20"] + lang_dir["en"]),
        ("miss-zh", "zh", "天气预报说明天有雨。", topic["other"] + lang_dir["zh"]),
    ]
    for i in range(300):  # filler in both languages, so each language has a mean to remove
        lang = ("en", "zh")[i % 2]
        text = f"filler {i}" if lang == "en" else f"填充文本{i}号"
        articles.append(
            (f"filler-{i}", lang, text, rng.standard_normal(enc.dim) / np.sqrt(enc.dim) + lang_dir[lang])
        )
    for _id, _lang, text, vec in articles:
        enc.table[text] = vec.astype(np.float32)
    svc = _open(tmp_path, enc)
    try:
        svc.upsert([ArticleInput(id=i, text=t, language=lang) for i, lang, t, _ in articles])
        fair = svc.search(SearchQuery(text=ZH_QUESTION, mode="dense", fairness=True, language="zh"))
        unfair = svc.search(SearchQuery(text=ZH_QUESTION, mode="dense", fairness=False, language="zh"))
    finally:
        svc.close()
    assert fair.hits[0].passage.article_id == "answer-en"
    assert unfair.hits[0].passage.article_id != "answer-en"  # without the correction its language loses


def test_a_rebuild_survives_deletes_and_updates_landing_mid_build(tmp_path: Path) -> None:
    enc = HookedEncoder()
    svc = _open(tmp_path, enc)
    try:
        svc.upsert(
            [
                ArticleInput(id=f"a{i}", text=f"article {i} about topic {i}. " * 5, language="en")
                for i in range(40)
            ]
        )

        later: list[threading.Thread] = []

        def updates() -> None:
            svc.upsert(
                [ArticleInput(id="a2", text="article 2, rewritten while the rebuild ran.", language="en")]
            )
            svc.upsert([ArticleInput(id="new", text="an article added during the rebuild.", language="en")])

        def writes_meanwhile() -> None:
            # Runs on the inference worker inside the rebuild's first pass: the delete needs no model;
            # the updates do, so they go to a thread (their passes go before the rebuild's next ones).
            svc.delete("a1")  # its passages are being embedded for the new generation right now
            later.append(threading.Thread(target=updates))
            later[0].start()

        enc.hook = writes_meanwhile
        enc.armed.set()
        gen = svc.reindex()
        later[0].join(60)
        stats = svc.stats()
        assert gen == 2 and stats.generation == 2
        assert stats.articles == 40 and stats.passages == stats.index_vectors == 40
        with pytest.raises(Exception, match="not found"):
            svc.get_article("a1")
        _, a2 = svc.get_article("a2")
        assert [p.text for p in a2] == ["article 2, rewritten while the rebuild ran."]
        assert svc.get_article("new")[1]
        ids = [h.passage.article_id for h in svc.search(SearchQuery(text="rewritten rebuild", top_k=3)).hits]
        assert "a2" in ids and "a1" not in ids
    finally:
        svc.close()


def test_a_stored_article_is_rebuilt_as_stored(fake_service: SearchService) -> None:
    given = ArticleInput(
        id="x",
        title=" Title ",
        text="Body text.\n\nSecond paragraph.",
        url="https://example.com/x?b=2&a=1",
        source="wire",
        published_at="2025-01-02T03:04:05+02:00",
        metadata={"k": 1, "flag": True},
    )
    fake_service.upsert([given])
    row = fake_service.store.get_article("x")
    assert row is not None
    a = article_from_row(row)  # what a reindex or a repair embeds again
    assert (a.id, a.title, a.text, a.url, a.source, a.published_at, a.language, dict(a.metadata)) == (
        row.id,
        "Title",
        row.text,
        row.url,
        row.source,
        "2025-01-02T03:04:05+02:00",
        row.language,
        {"k": 1, "flag": True},
    )
    assert a.content_hash == row.content_hash
    assert fake_service.upsert([given])[0].status == "unchanged"  # the stored form hashes as the input


def test_an_article_over_the_passage_cap_is_refused_before_embedding(tmp_path: Path) -> None:
    enc = FakeEncoder()
    svc = _open(tmp_path, enc, max_article_passages=3, target_tokens=16, max_passage_tokens=32)
    try:
        long_text = " ".join(f"Sentence number {i} is here." for i in range(200))
        with pytest.raises(InvalidArticleError) as err:
            svc.upsert([ArticleInput(id="ok", text="short."), ArticleInput(id="long", text=long_text)])
        assert (
            err.value.details[0]["index"] == 1
            and "CITESEARCH_MAX_ARTICLE_PASSAGES" in err.value.details[0]["message"]
        )
        assert not any(kind == "passages" and n > 1 for kind, n in enc.calls)  # nothing was embedded
        assert svc.stats().articles == 0  # the batch is refused whole
    finally:
        svc.close()


@pytest.mark.parametrize("text", ["   ", "x" * 2001, "\u200b\u200b", "🙂🙂"])
def test_questions_that_cannot_be_answered_are_refused(fake_service: SearchService, text: str) -> None:
    with pytest.raises(InvalidQueryError):
        fake_service.search(SearchQuery(text=text))


def test_searches_see_every_write_once_committed(fake_service: SearchService) -> None:
    fake_service.upsert([ArticleInput(id="a", text="alpha beta gamma.", language="en")])
    assert fake_service.search(SearchQuery(text="alpha")).hits[0].passage.article_id == "a"
    fake_service.upsert([ArticleInput(id="a", text="delta epsilon.", language="en")])
    hit = fake_service.search(SearchQuery(text="delta epsilon")).hits[0]
    assert hit.passage.text == "delta epsilon."
    assert fake_service.delete("a") == 1
    assert fake_service.search(SearchQuery(text="delta")).hits == []
