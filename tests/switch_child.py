"""Child process for the switch crash tests: builds a store, reindexes it, and stops dead between the
switch to the new generation and the drop of the old one, until it is killed.

Standalone (`switch_child.py DATA`): the store is the real one; its `transaction` is wrapped only to
say when the switch has committed (`generation` changed) and then wait on stdin, so the parent's
kill -9 lands in that window. In a cluster (`switch_child.py DATA URL`): the same, at the cluster
store's drop of the retired generation, after the switch's commit.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from citesearch.index.articles import ArticleInput
from citesearch.index.cluster import ClusterConfig
from citesearch.index.service import IndexConfig, SearchService
from citesearch.index.store import StoreTransaction
from tests.fakes import FakeEncoder


def _stop_after_the_switch(svc: SearchService) -> None:
    store = svc.store
    begin = store.transaction

    @contextmanager
    def transaction() -> Iterator[StoreTransaction]:
        before = store.generation
        with begin() as tx:
            yield tx
        if store.generation != before:
            print(f"switched {before} {store.generation}", flush=True)
            sys.stdin.readline()  # until killed

    store.transaction = transaction  # type: ignore[method-assign]


def _stop_before_the_cluster_drop(svc: SearchService) -> None:
    replica = svc._replica
    assert replica is not None

    def drop_retired() -> int:
        print(f"switched {replica.pg.head().generation}", flush=True)
        sys.stdin.readline()  # until killed
        return 0

    replica.pg.drop_retired = drop_retired  # type: ignore[method-assign]


def main() -> None:
    """Ingest, checkpoint, then reindex and stop right after the switch commits."""
    cluster = ClusterConfig(url=sys.argv[2], poll_s=0.1, timeout_s=2.0) if len(sys.argv) > 2 else None
    svc = SearchService(IndexConfig(data_dir=Path(sys.argv[1])), FakeEncoder(), cluster=cluster)
    svc.upsert(
        [
            ArticleInput(
                id=f"r-{i}",
                text=f"Report {i}: the council met on day {i} and approved budget line {i}.",
                language="en",
            )
            for i in range(12)
        ]
    )
    svc.checkpoint()
    if cluster is None:
        _stop_after_the_switch(svc)
    else:
        _stop_before_the_cluster_drop(svc)
    svc.reindex()
    print("not killed", flush=True)


if __name__ == "__main__":
    main()
