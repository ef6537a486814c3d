"""What the parts of the service share: configuration, the model seam, the serving state, the core.

`SearchService` (index/service.py) builds one `Core` and hands it to its parts: the writer
(index/writes.py), the rebuilder (index/rebuild.py), maintenance (index/maintenance.py) and the
searcher (index/search.py). The parts never call each other through the service.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

from citesearch.embeddings.scheduler import InferenceScheduler
from citesearch.index.answers import AnswerReader
from citesearch.index.fairness import LanguageMeans
from citesearch.index.locks import RWLock
from citesearch.index.store import Store
from citesearch.index.vectors import VectorIndex


@dataclass
class IndexConfig:
    """Everything the domain needs to know; the API builds it from its settings."""

    data_dir: Path
    target_tokens: int = 200
    max_passage_tokens: int = 512
    overlap_sentences: int = 0
    max_article_bytes: int = 1_000_000
    max_article_passages: int = 256
    max_query_chars: int = 2000
    index_kind: Literal["auto", "flat", "hnsw"] = "auto"
    approx_threshold: int = 80_000
    checkpoint_every_s: float = 10.0
    fairness: bool = True
    sentence_vectors: bool = True
    """Embed every sentence of every passage (passage choice, article score, highlight); off: the
    passage vector stands for its one sentence (ingest benchmarks compare the two)."""
    answer_hits: int = 1
    """How many of a search page's first hits the answer model reads (index/answers.py): their
    highlight is the sentence it finds most likely to answer, marked when it does; 0 turns it off
    for search (answers read their own number of hits)."""
    passage_vectors: Literal["model", "sentences"] = "model"
    """Where a passage's vector comes from: "model" embeds the passage text as well as its
    sentences; "sentences" runs the model on the sentences only and pools their vectors (half the
    model work at ingest). A passage that is one sentence unit is embedded once either way."""


class Encoder(Protocol):
    """What the domain needs from a model (`embeddings.Embedder` is the real one)."""

    @property
    def dim(self) -> int: ...
    @property
    def model_id(self) -> str: ...
    @property
    def max_tokens(self) -> int: ...
    def encode_queries(self, texts: list[str]) -> npt.NDArray[np.float32]: ...
    def encode_passages(self, texts: list[str]) -> npt.NDArray[np.float32]: ...
    def count_tokens_batch(self, texts: list[str]) -> list[int]: ...


def prepare_questions(encoder: Encoder) -> None:
    """Compile what `encoder` runs questions on (OpenVINO's question copies, ~2 s) now: before a
    server is ready, or before a model it switches to serves, rather than on its first questions."""
    prepare = getattr(encoder, "prepare_questions", None)
    if prepare is not None:
        prepare()


@dataclass(frozen=True)
class ServingState:
    """What one generation serves with: its model, its FAISS index and its language means.

    Replaced whole (never edited) when the means change or a rebuild switches generations. The
    FAISS index inside is the one mutable part: changed only under the exclusive lock.
    """

    generation: int
    embedder: Encoder
    vectors: VectorIndex
    means: LanguageMeans


@dataclass
class Core:
    """The store, the locks, the scheduler and the serving state, shared by the service's parts.

    Lock order, outermost first; nothing is taken in the other order:
      1. `write_mutex`: one writer at a time (a write's commit, a delete, a rebuild's batch and
         switch, a checkpoint, repair, the swap to HNSW). Never held across a model call.
      2. `lock` (readers-writer): searches and reads hold it shared while they touch the FAISS
         index and the store; a writer holds it exclusively only from its commit to the end of
         the matching FAISS update and state swap, so readers see all of a write or none.
    The scheduler's queue and the store's caches use leaf locks: nothing is taken under them.
    """

    config: IndexConfig
    store: Store
    scheduler: InferenceScheduler
    state: ServingState
    answers: AnswerReader | None = None
    """The answer-sentence model (None: highlights by cosine alone, nothing marked as answering)."""
    lock: RWLock = field(default_factory=RWLock)
    write_mutex: threading.RLock = field(default_factory=threading.RLock)
    dirty_since: float | None = None
    """When the FAISS index first changed since its last checkpoint (monotonic), else None."""

    def means(self, generation: int) -> LanguageMeans:
        """The language means of a generation, from the store's per-language sums."""
        return LanguageMeans.from_stats(self.store.lang_stats(generation))

    def mark_dirty(self) -> None:
        """Note that the FAISS index differs from its checkpoint."""
        if self.dirty_since is None:
            self.dirty_since = time.monotonic()

    def generation_dir(self, generation: int) -> Path:
        """Where a generation's FAISS checkpoint lives."""
        return self.config.data_dir / "generations" / f"{generation:06d}"

    def index_kind_for(self, n_passages: int) -> Literal["flat", "hnsw"]:
        """The FAISS kind for a generation of `n_passages` under the configured policy."""
        if self.config.index_kind != "auto":
            return self.config.index_kind
        return "hnsw" if n_passages >= self.config.approx_threshold else "flat"
