"""A short soak with the real model: writers and readers at once; no question starves behind writes.

Counted, not timed: the scheduler records how many write slices started while each question
waited. Questions go first, so that is at most one (the slice already running when it arrived),
however much write work is queued. `bench/soak.py` measures the latencies.
"""

from __future__ import annotations

import threading
from pathlib import Path

from citesearch.embeddings import Embedder
from citesearch.index.articles import ArticleInput
from citesearch.index.search import SearchQuery
from citesearch.index.service import IndexConfig, SearchService

SEED = Path(__file__).resolve().parent.parent / "seeds" / "000_cb51183e942cda20.txt"
QUESTIONS = [
    "英伟达的H20芯片有后门吗？",
    "Does the H20 chip have a backdoor?",
    "Wer hat die Exportkontrollen verhängt?",
]


def _article(i: int, body: str) -> ArticleInput:
    paragraphs = body.split("\n\n")
    text = "\n\n".join(f"Update {i}, part {j}. {p}" for j, p in enumerate(paragraphs[: 2 + i % 3]))
    return ArticleInput(id=f"wire-{i}", title=f"Wire story {i}", text=text, language="en")


def test_questions_are_answered_between_write_slices(tmp_path: Path, embedder: Embedder) -> None:
    body = SEED.read_text(encoding="utf-8").partition("\n")[2].strip()
    svc = SearchService(IndexConfig(data_dir=tmp_path / "data"), embedder)
    try:
        svc.upsert([_article(0, body)])
        writes_done = threading.Event()
        answered: list[int] = []
        errors: list[BaseException] = []

        def writer() -> None:
            try:
                for batch in range(4):
                    svc.upsert([_article(1 + batch * 6 + k, body) for k in range(6)])
            except BaseException as exc:
                errors.append(exc)
            finally:
                writes_done.set()

        def reader(n: int) -> None:
            try:
                for i in range(400):  # bounded: stops with the writes, or after 400 questions
                    if writes_done.is_set():
                        return
                    out = svc.search(SearchQuery(text=QUESTIONS[(n + i) % len(QUESTIONS)], top_k=3))
                    answered.append(len(out.hits))
            except BaseException as exc:
                errors.append(exc)

        threads = [
            threading.Thread(target=writer),
            *(threading.Thread(target=reader, args=(n,)) for n in range(2)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        stats = svc.scheduler.stats
        assert not errors
        assert stats.write_slices >= 8  # the writes were cut into many passes
        assert stats.queries_ahead_of_writes >= 1  # questions overtook queued write work
        assert stats.max_slices_waited <= 1  # and no question ever waited behind more than one slice
        assert answered and min(answered) >= 1
        assert svc.stats().articles == 25
        assert svc.stats().passages == svc.stats().index_vectors
    finally:
        svc.close()
