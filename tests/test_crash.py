"""kill -9 a real ingesting process; on restart every acknowledged article is searchable and
store and index agree exactly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from citesearch.embeddings import Embedder
from citesearch.index.search import SearchQuery
from citesearch.index.service import IndexConfig, SearchService

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.parametrize("acks_before_kill", [7, 31])
def test_sigkill_mid_ingest_leaves_store_and_index_consistent(
    tmp_path: Path, embedder: Embedder, acks_before_kill: int
) -> None:
    data = tmp_path / "data"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-u", str(ROOT / "tests" / "crash_child.py"), str(data)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    acked: set[str] = set()
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        while len(acked) < acks_before_kill:
            line = child.stdout.readline()
            assert line, "child died before being killed"
            acked.add(line.split()[1])
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    svc = SearchService(IndexConfig(data_dir=data), embedder)
    try:
        in_store = np.sort(svc.store.passage_ids(svc.state.generation))
        in_index = np.sort(svc.state.vectors.ids())
        assert np.array_equal(in_store, in_index)
        # Sentence vectors are part of the passage record: every surviving passage has them.
        sents = svc.store.passage_sentences(in_store.tolist())
        assert sents.keys() == set(in_store.tolist())
        assert svc.stats().sentences == sum(len(s) for s in sents.values())
        for art_id in acked:
            row, passages = svc.get_article(art_id)
            assert passages, art_id
            assert all(row.text[p.char_start : p.char_end] == p.text for p in passages)
            assert all(p.id in set(in_index.tolist()) for p in passages)
            for p in passages:
                spans = sents[p.id].spans
                assert p.char_start <= spans[0][0] and spans[-1][1] <= p.char_end, (art_id, spans)
        some = sorted(acked)[0]
        hits = svc.search(SearchQuery(text=svc.get_article(some)[0].text, top_k=50, per_article=1)).hits
        assert some in {h.passage.article_id for h in hits}
    finally:
        svc.close()
