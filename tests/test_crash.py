"""kill -9 a real ingesting process; on restart every acknowledged article is searchable and
store and index agree exactly. kill -9 a reindex between its switch and its drop; on restart only
the serving generation is left, in the store and on disk."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from citesearch.embeddings import Embedder
from citesearch.index.search import SearchQuery
from citesearch.index.service import IndexConfig, SearchService
from tests.fakes import FakeEncoder

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


def stored_generations(db: Path) -> dict[int, int]:
    """Passages per generation, read from the store file itself."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT generation, count(*) FROM passages GROUP BY generation").fetchall()
        return {int(g): int(n) for g, n in rows}
    finally:
        conn.close()


def test_sigkill_between_the_switch_and_the_drop_is_repaired_at_start_up(tmp_path: Path) -> None:
    data = tmp_path / "data"
    child = subprocess.Popen(
        [sys.executable, "-u", str(ROOT / "tests" / "switch_child.py"), str(data)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().split() == ["switched", "1", "2"]  # the child waits there
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    # The outside run's state: generation 2 serves, generation 1's passages and checkpoint are left.
    left = stored_generations(data / "store.sqlite")
    assert set(left) == {1, 2} and left[1] == left[2] == 12
    assert sorted(p.name for p in (data / "generations").iterdir()) == ["000001"]
    svc = SearchService(IndexConfig(data_dir=data), FakeEncoder())
    try:
        assert svc.last_repair.dropped_stale_passages == 12
        assert stored_generations(data / "store.sqlite") == {2: 12}
        assert sorted(p.name for p in (data / "generations").iterdir()) == ["000002"]
        stats = svc.stats()
        assert (stats.generation, stats.passages, stats.index_vectors, stats.stale_passages) == (2, 12, 12, 0)
        hits = svc.search(SearchQuery(text="budget line 7", top_k=1, mode="lexical")).hits
        assert hits and hits[0].passage.article_id == "r-7"
        assert svc.reindex() == 3  # a clean reindex afterwards leaves one generation, as it should
        assert stored_generations(data / "store.sqlite") == {3: 12}
        assert sorted(p.name for p in (data / "generations").iterdir()) == ["000003"]
    finally:
        svc.close()
