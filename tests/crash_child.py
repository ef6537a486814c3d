"""Child process for the crash test: ingests articles forever, printing each acknowledged id."""

from __future__ import annotations

import sys
from pathlib import Path

from citesearch.embeddings import load_embedder
from citesearch.index.articles import ArticleInput
from citesearch.index.service import IndexConfig, SearchService


def main() -> None:
    """Write small batches until killed; an id is printed only after its write returned."""
    data_dir = Path(sys.argv[1])
    svc = SearchService(IndexConfig(data_dir=data_dir, checkpoint_every_s=0.2), load_embedder())
    print("ready", flush=True)
    i = 0
    while True:
        batch = [
            ArticleInput(
                id=f"crash-{i + j}",
                title=f"Report {i + j}",
                text=f"Report {i + j}: the council met on day {i + j} and approved budget line {i + j}. "
                "Members debated the proposal at length before the vote.",
                language="en",
            )
            for j in range(3)
        ]
        svc.upsert(batch)
        for a in batch:
            print(f"ack {a.id}", flush=True)
        # Rewrite an earlier article too, so updates (passage replacement) are in flight as well.
        if i >= 3:
            svc.upsert([batch[0].model_copy(update={"id": f"crash-{i - 3}", "text": f"Updated report {i}."})])
            print(f"ack crash-{i - 3}", flush=True)
        i += 3


if __name__ == "__main__":
    main()
