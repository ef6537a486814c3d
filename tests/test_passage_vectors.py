"""Passage vectors pooled from sentence vectors (`passage_vectors="sentences"`): the model runs on
each sentence unit only, and a passage's vector is the token-weighted mean of its units' vectors.
Checked with the real model, through the service: the stored vectors, a search, a reindex."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from pydantic import ValidationError

from citesearch.api.settings import Settings
from citesearch.embeddings import Embedder
from citesearch.index.search import SearchQuery
from citesearch.index.service import IndexConfig, SearchService
from tests.test_sentences import NVIDIA, REPORT


def _passage_and_sentence_vectors(
    svc: SearchService, embedder: Embedder
) -> list[tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]]:
    """Per stored passage: its FAISS vector, its sentence vectors, and each sentence's token count."""
    ids = svc.store.passage_ids(svc.state.generation).tolist()
    vecs, _ = svc.state.vectors.reconstruct(ids)
    sents = svc.store.passage_sentences(ids)
    rows = svc.store.passages(ids)
    overhead = embedder.count_tokens_batch([""])[0]
    out = []
    for pid, vec in zip(ids, vecs, strict=True):
        text = svc.store.get_article(rows[pid].article_id).text  # type: ignore[union-attr]
        units = [text[b:e] for b, e in sents[pid].spans.tolist()]
        tokens = np.array([n - overhead for n in embedder.count_tokens_batch(units)], dtype=np.float32)
        out.append((vec, np.asarray(sents[pid].vectors), tokens))
    return out


def _assert_pooled(svc: SearchService, embedder: Embedder) -> None:
    got = _passage_and_sentence_vectors(svc, embedder)
    assert sum(len(s) > 1 for _, s, _ in got) >= 3  # the articles' passages are mostly several units
    for vec, sents, tokens in got:
        pooled = tokens @ sents
        assert np.allclose(vec, pooled / np.linalg.norm(pooled), atol=1e-5)


def test_a_passage_vector_is_the_token_weighted_mean_of_its_sentences(
    tmp_path: Path, embedder: Embedder
) -> None:
    config = IndexConfig(
        data_dir=tmp_path / "data", target_tokens=48, max_passage_tokens=96, passage_vectors="sentences"
    )
    svc = SearchService(config, embedder)
    try:
        svc.upsert([NVIDIA, REPORT])
        _assert_pooled(svc, embedder)
        # A passage of one unit is the model's own vector for its text (embedded once).
        one = REPORT.model_copy(update={"id": "one", "text": "The harbour budget was approved on Monday."})
        svc.upsert([one])
        _, passages = svc.get_article("one")
        vec, _ = svc.state.vectors.reconstruct([passages[0].id])
        assert np.allclose(vec[0], embedder.encode_passages([one.text])[0], atol=1e-5)

        hits = svc.search(SearchQuery(text="How much did the export controls cost Nvidia?", top_k=3)).hits
        assert hits[0].passage.article_id == "nvidia-h20"
        assert "$5.5 billion" in NVIDIA.text[hits[0].passage.char_start : hits[0].passage.char_end]

        gen = svc.state.generation
        svc.reindex()  # a rebuild goes through the same path
        assert svc.state.generation == gen + 1
        _assert_pooled(svc, embedder)
    finally:
        svc.close()


def test_model_passage_vectors_embed_the_passage_text(tmp_path: Path, embedder: Embedder) -> None:
    """The other setting: the passage's own text through the model, not its sentences pooled."""
    svc = SearchService(IndexConfig(data_dir=tmp_path / "data", passage_vectors="model"), embedder)
    try:
        svc.upsert([NVIDIA])
        _, passages = svc.get_article("nvidia-h20")
        vecs, _ = svc.state.vectors.reconstruct([p.id for p in passages])
        texts = [NVIDIA.text[p.char_start : p.char_end] for p in passages]
        assert np.allclose(vecs, embedder.encode_passages(texts), atol=1e-5)
    finally:
        svc.close()


def test_the_setting_reaches_the_index_and_refuses_other_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CITESEARCH_PASSAGE_VECTORS", "sentences")
    assert Settings(data_dir=tmp_path).index_config().passage_vectors == "sentences"
    monkeypatch.setenv("CITESEARCH_PASSAGE_VECTORS", "late")
    with pytest.raises(ValidationError, match="passage_vectors"):
        Settings(data_dir=tmp_path)
    monkeypatch.delenv("CITESEARCH_PASSAGE_VECTORS")
    assert Settings(data_dir=tmp_path).index_config().passage_vectors == "model"
