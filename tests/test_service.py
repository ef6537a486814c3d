"""The domain end to end: store of record, FAISS index on disk, live updates, repair, reindex."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from citesearch.embeddings import Embedder
from citesearch.index.articles import ArticleInput
from citesearch.index.errors import DataDirLockedError, InvalidArticleError, NotFoundError
from citesearch.index.search import SearchQuery
from citesearch.index.service import IndexConfig, SearchService
from citesearch.index.store import Filters

SEED = Path(__file__).resolve().parent.parent / "seeds" / "000_cb51183e942cda20.txt"


def seed_input() -> ArticleInput:
    title, _, body = SEED.read_text(encoding="utf-8").partition("\n")
    return ArticleInput(
        id="nvidia-h20", title=title, text=body.strip(), source="seed", url="https://example.com/h20"
    )


OTHERS = [
    ArticleInput(
        id="weather",
        title="Storm warning",
        text="A severe storm is expected to hit the northern coast on Friday. Residents were told to stay indoors.",
        source="wire",
        language="en",
        published_at="2025-01-10",
    ),
    ArticleInput(
        id="football",
        title="Cup final",
        text="Der Verein gewann das Pokalfinale mit 2:1. Die Fans feierten bis spät in die Nacht.",
        source="sport",
        language="de",
        published_at="2025-03-02",
    ),
    ArticleInput(
        id="markets",
        title="市场",
        text="股市今天上涨了百分之二。投资者对新的经济数据感到乐观。",
        source="wire",
        language="zh",
        published_at="2025-08-01",
    ),
]


@pytest.fixture
def service(tmp_path: Path, embedder: Embedder) -> Iterator[SearchService]:
    svc = SearchService(IndexConfig(data_dir=tmp_path / "data"), embedder)
    try:
        yield svc
    finally:
        svc.close()


def test_seed_is_found_by_a_chinese_question_with_exact_offsets(service: SearchService) -> None:
    service.upsert([seed_input(), *OTHERS])
    out = service.search(SearchQuery(text="英伟达的H20芯片有后门吗？", top_k=3))
    top = out.hits[0]
    assert top.passage.article_id == "nvidia-h20"
    article, _ = service.get_article("nvidia-h20")
    assert article.text[top.passage.char_start : top.passage.char_end] == top.passage.text
    assert "backdoor" in top.passage.text
    hl = top.highlight
    assert article.text[hl.char_start : hl.char_end] == hl.text


def test_created_unchanged_updated_and_deleted(service: SearchService) -> None:
    first = service.upsert([seed_input()])
    assert [r.status for r in first] == ["created"] and first[0].passages > 0
    again = service.upsert([seed_input()])
    assert again[0].status == "unchanged" and again[0].passages == first[0].passages
    changed = seed_input().model_copy(update={"text": "NVIDIA said the H20 has no backdoor. That is all."})
    upd = service.upsert([changed])
    assert upd[0].status == "updated"
    _, passages = service.get_article("nvidia-h20")
    assert "".join(p.text for p in passages).startswith("NVIDIA said")
    stats = service.stats()
    assert stats.passages == stats.index_vectors == len(passages)
    service.delete("nvidia-h20")
    assert service.stats().index_vectors == 0
    assert service.search(SearchQuery(text="H20 backdoor")).hits == []
    with pytest.raises(NotFoundError):
        service.delete("nvidia-h20")


def test_an_invalid_article_rejects_the_whole_batch(service: SearchService) -> None:
    with pytest.raises(InvalidArticleError) as exc:
        service.upsert([seed_input(), ArticleInput(id="empty", text="   ")])
    assert any(d.get("index") == 1 for d in exc.value.details)
    assert service.stats().articles == 0


def test_filters_apply_inside_retrieval(service: SearchService) -> None:
    service.upsert([seed_input(), *OTHERS])
    out = service.search(SearchQuery(text="storm", top_k=5, filters=Filters(sources=("wire",))))
    assert out.hits and {h.passage.source for h in out.hits} == {"wire"}
    assert len(out.hits) == 2  # both wire articles, though the seed matches the words better
    lang = service.search(SearchQuery(text="NVIDIA", filters=Filters(languages=("de",))))
    assert [h.passage.article_id for h in lang.hits] == ["football"]


def test_restart_reloads_the_checkpoint_and_repairs_drift(tmp_path: Path, embedder: Embedder) -> None:
    cfg = IndexConfig(data_dir=tmp_path / "d")
    svc = SearchService(cfg, embedder)
    svc.upsert([seed_input(), *OTHERS])
    n = svc.stats().index_vectors
    svc.close()
    again = SearchService(cfg, embedder)
    assert again.last_repair.loaded_checkpoint and not again.last_repair.changed
    assert again.stats().index_vectors == n
    # Simulate a checkpoint that lags the store: drop vectors from the index behind the store's back.
    ids = again.state.vectors.ids()[:2]
    again.state.vectors.remove(ids)
    again.checkpoint()
    again.close()
    third = SearchService(cfg, embedder)
    assert third.last_repair.added == 2
    assert third.stats().index_vectors == n
    third.close()


def test_reindex_switches_generation_and_search_keeps_answering(service: SearchService) -> None:
    service.upsert([seed_input(), *OTHERS])
    before = service.stats()
    service.checkpoint()
    answers: list[int] = []
    stale: set[int] = set()
    stop = threading.Event()

    def searcher() -> None:
        while not stop.is_set():
            answers.append(len(service.search(SearchQuery(text="H20 backdoor")).hits))
            stale.add(service.stats().stale_passages)  # the generation being built is not stale

    t = threading.Thread(target=searcher)
    t.start()
    try:
        gen = service.reindex()
    finally:
        stop.set()
        t.join()
    assert gen == before.generation + 1
    after = service.stats()
    assert after.passages == before.passages == after.index_vectors
    assert answers and min(answers) >= 1
    assert service.search(SearchQuery(text="H20 backdoor")).generation == gen
    assert stale == {0} and after.stale_passages == 0
    assert service.store.generation_passages() == {gen: after.passages}  # the old generation is gone
    assert [p.name for p in (service.data_dir / "generations").iterdir()] == [f"{gen:06d}"]


def test_dense_scores_are_fair_across_languages(service: SearchService) -> None:
    service.upsert([seed_input(), *OTHERS])
    means = service.state.means
    assert set(means.counts) >= {"en", "de", "zh"}
    for mu in means.means.values():
        assert np.isfinite(mu).all()


def test_a_second_process_cannot_open_a_data_dir_in_use(service: SearchService, embedder: Embedder) -> None:
    with pytest.raises(DataDirLockedError, match="in use"):
        SearchService(IndexConfig(data_dir=service.data_dir), embedder)


class _FailsDuringRebuild:
    """The real model, with a fault injected: passage encoding fails after `ok` calls (a rebuild dying midway)."""

    def __init__(self, inner: Embedder, ok: int) -> None:
        self.inner = inner
        self.ok = ok
        self.dim = inner.dim
        self.model_id = inner.model_id
        self.max_tokens = inner.max_tokens

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self.inner.encode_queries(texts)

    def encode_passages(self, texts: list[str]) -> np.ndarray:
        if self.ok <= 0:
            raise RuntimeError("injected failure")
        self.ok -= 1
        return self.inner.encode_passages(texts)

    def count_tokens_batch(self, texts: list[str]) -> list[int]:
        return self.inner.count_tokens_batch(texts)


def test_a_failed_rebuild_leaves_the_old_generation_serving(
    service: SearchService, embedder: Embedder
) -> None:
    many = [
        ArticleInput(
            id=f"n{i}", text=f"Article {i} about semiconductors and export rules, part {i}.", language="en"
        )
        for i in range(20)
    ]
    service.upsert([seed_input(), *many])
    before = service.stats()
    with pytest.raises(RuntimeError, match="injected"):
        service.reindex(_FailsDuringRebuild(embedder, ok=1))
    after = service.stats()
    assert after.generation == before.generation
    assert after.passages == before.passages == after.index_vectors
    assert service.store.get_meta("building") is None
    assert len(service.store.passage_ids(after.generation + 1)) == 0  # the failed build left nothing
    assert service.search(SearchQuery(text="H20 backdoor")).hits[0].passage.article_id == "nvidia-h20"


def test_auto_switches_to_hnsw_past_the_threshold_and_honours_deletes(
    tmp_path: Path, embedder: Embedder
) -> None:
    cfg = IndexConfig(data_dir=tmp_path / "d", approx_threshold=4)
    svc = SearchService(cfg, embedder)
    try:
        svc.upsert([seed_input(), *OTHERS])  # crosses the threshold: the switch starts by itself
        svc.wait_for_background(120)
        assert svc.stats().index_kind == "hnsw"
        assert not svc.go_approximate_if_large()  # nothing left to do
        assert svc.stats().index_vectors == svc.stats().passages
        assert (
            svc.search(SearchQuery(text="英伟达的H20芯片有后门吗？")).hits[0].passage.article_id
            == "nvidia-h20"
        )
        svc.delete("nvidia-h20")
        hits = svc.search(SearchQuery(text="H20 backdoor NVIDIA", top_k=10, mode="dense")).hits
        assert "nvidia-h20" not in {h.passage.article_id for h in hits}
    finally:
        svc.close()
    again = SearchService(cfg, embedder)
    try:
        assert again.state.vectors.kind == "hnsw" and not again.last_repair.changed
        assert again.stats().index_vectors == again.stats().passages
    finally:
        again.close()


def test_configured_hnsw_index_is_used_from_the_first_write_and_after_restart(
    tmp_path: Path, embedder: Embedder
) -> None:
    cfg = IndexConfig(data_dir=tmp_path / "d", index_kind="hnsw")
    svc = SearchService(cfg, embedder)
    try:
        svc.upsert([seed_input(), *OTHERS])
        assert svc.stats().index_kind == "hnsw"
        svc.delete("nvidia-h20")
        assert all(h.passage.article_id != "nvidia-h20" for h in svc.search(SearchQuery(text="H20")).hits)
    finally:
        svc.close()
    again = SearchService(cfg, embedder)
    try:
        assert again.stats().index_kind == "hnsw"
        assert again.stats().index_vectors == again.stats().passages
    finally:
        again.close()


def test_searches_never_see_a_half_applied_update(tmp_path: Path, embedder: Embedder) -> None:
    """A writer flips one article between two versions while a reader searches: every answer is one whole version."""
    alpha = " ".join(f"Alpha report {i}: the river port handled more grain this season." for i in range(30))
    beta = " ".join(f"Beta report {i}: the mountain railway closed after the storm." for i in range(12))
    svc = SearchService(IndexConfig(data_dir=tmp_path / "d", target_tokens=64), embedder)
    stop = threading.Event()
    seen: list[frozenset[str]] = []
    try:
        versions: set[frozenset[str]] = set()
        for text in (beta, alpha):
            svc.upsert([ArticleInput(id="flip", text=text, language="en")])
            versions.add(frozenset(p.text for p in svc.get_article("flip")[1]))
        assert len(versions) == 2 and all(len(v) > 1 for v in versions)
        svc.upsert(OTHERS)

        def reader() -> None:
            while not stop.is_set():
                q = SearchQuery(text="port grain railway storm", top_k=50, per_article=20)
                out = svc.search(q)
                seen.append(frozenset(h.passage.text for h in out.hits if h.passage.article_id == "flip"))

        t = threading.Thread(target=reader)
        t.start()
        try:
            for i in range(20):
                svc.upsert([ArticleInput(id="flip", text=beta if i % 2 == 0 else alpha, language="en")])
        finally:
            stop.set()
            t.join(60)
    finally:
        svc.close()
    assert seen
    for s in seen:
        assert s in versions, sorted(s)


def test_rows_written_under_older_rules_are_embedded_again_as_stored(
    tmp_path: Path, embedder: Embedder
) -> None:
    """A date or URL accepted before the rules tightened (ISO basic dates, `"<>` in URLs) stays
    stored; a reindex re-embeds such an article as it is, with its hash, rather than failing."""
    cfg = IndexConfig(data_dir=tmp_path / "data")
    svc = SearchService(cfg, embedder)
    svc.upsert(OTHERS)
    svc.close()
    with sqlite3.connect(cfg.data_dir / "store.sqlite") as db:  # what an older version stored
        db.execute(
            "UPDATE articles SET published_at = '2025-W02-5', url = 'https://example.com/a\"<b>' "
            "WHERE id = 'weather'"
        )
    db.close()
    svc = SearchService(cfg, embedder)
    try:
        before = svc.get_article("weather")[0]
        assert svc.reindex() == 2
        after, passages = svc.get_article("weather")
        assert passages and (after.published_at, after.url, after.content_hash) == (
            "2025-W02-5",
            'https://example.com/a"<b>',
            before.content_hash,
        )
        assert svc.stats().passages == svc.stats().index_vectors
    finally:
        svc.close()
