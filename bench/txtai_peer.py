"""The peer: txtai (a bench-only dependency, `pip install -e ".[bench]"`) on the same model and passages.

txtai gets the prepared model directory that citesearch serves (models/multilingual-e5-small), the
same E5 prompts ("query: " / "passage: ") as instructions, content storage on (its SQLite store,
the counterpart of our store of record) and its default FAISS backend (an exact `IDMap,Flat` index
up to 5,000 rows, IVF above). It indexes the passages our splitter produced, so both systems embed
exactly the same texts; our indexing time also includes splitting and lexical indexing.

`bench.perf` drives it: it builds a `TxtaiPeer`, times `index()` next to our ingest, and interleaves
`search()` with our searches question by question so that machine noise hits both alike.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

QUERY_PROMPT = "query: "
PASSAGE_PROMPT = "passage: "


def txtai_version() -> str | None:
    """The installed txtai version, or None when the bench extra is not installed."""
    try:
        from importlib.metadata import version

        return version("txtai")
    except Exception:  # PackageNotFoundError and anything a broken install raises
        return None


class TxtaiPeer:
    """A txtai `Embeddings` over one model directory, content stored, dense search."""

    def __init__(self, model_dir: Path) -> None:
        from txtai import Embeddings

        t0 = time.perf_counter()
        self.config: dict[str, Any] = {
            "path": str(model_dir),
            "content": True,
            "backend": "faiss",
            "instructions": {"query": QUERY_PROMPT, "data": PASSAGE_PROMPT},
        }
        self.embeddings: Any = Embeddings(**self.config)
        self.load_s = time.perf_counter() - t0
        self.index_s: float | None = None

    def index(self, passages: Sequence[tuple[int, str]]) -> float:
        """Index (id, text) passages from scratch; returns seconds."""
        t0 = time.perf_counter()
        self.embeddings.index([{"id": str(pid), "text": text} for pid, text in passages])
        self.index_s = time.perf_counter() - t0
        return self.index_s

    def search(self, query: str, k: int = 5) -> list[dict[str, Any]]:
        """Top-k results (id, text, score) for one question."""
        out: list[dict[str, Any]] = self.embeddings.search(query, k)
        return out

    def passage_vectors(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """txtai's own embeddings of passages (with the passage instruction), for the sanity check."""
        vecs = np.asarray(self.embeddings.batchtransform(list(texts), category="data"), dtype=np.float32)
        return vecs

    def query_vectors(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """txtai's own embeddings of questions (with the query instruction)."""
        return np.asarray(self.embeddings.batchtransform(list(texts), category="query"), dtype=np.float32)

    def info(self) -> dict[str, Any]:
        """What txtai built: backend, FAISS components and row count."""
        cfg = dict(self.embeddings.config or {})
        return {
            "version": txtai_version(),
            "backend": cfg.get("backend"),
            "faiss": cfg.get("faiss"),
            "method": cfg.get("method"),
            "count": int(self.embeddings.count()),
            "config": {k: v for k, v in self.config.items() if k != "path"},
        }

    def close(self) -> None:
        """Release the model and the index."""
        self.embeddings.close()


def cosine_agreement(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> dict[str, float]:
    """Row-wise cosine between two embeddings of the same texts (1.0: the same model and prompts)."""
    an = a / np.linalg.norm(a, axis=1, keepdims=True)
    bn = b / np.linalg.norm(b, axis=1, keepdims=True)
    cos = np.sum(an * bn, axis=1)
    return {"min": float(cos.min()), "mean": float(cos.mean())}
