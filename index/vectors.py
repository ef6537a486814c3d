"""The FAISS index: explicit int64 ids, exact inner product by default, an approximate kind for scale.

Each stored vector is the passage embedding followed by a one-hot language slot
(`[p, e_slot(lang)]`). A query `[q, -c]` then scores `q·p - c[slot]`: a per-language offset
computed at query time. That is what makes language-mean removal exact inside one FAISS
inner-product search while the means change as articles come and go, with no re-encoding
(see `index/fairness.py`).

Files: `<dir>/vectors.faiss` and `<dir>/vectors.json` (the manifest), both written to a temp
file and `os.replace`d, manifest last; the manifest names the store write sequence it matches.
"""

from __future__ import annotations

import json
import os
import platform
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

_faiss: Any = faiss  # the bundled stubs lack the search-parameter classes

# One query at a time: FAISS's OpenMP pool only adds contention with the model's threads on the hot
# path (measured: flat k=100 over 2k passages, 12 ms with the default pool, 0.2 ms with one thread).
# OpenMP keeps the thread count per calling thread, and a thread Python starts begins at the
# process default (every core), so each thread that calls FAISS pins itself first (_one_thread):
# pinned only at import, searches from the server's worker threads still ran FAISS on 2 OpenMP
# threads whose spinning slowed the model's next pass (HTTP search p50 8.9 -> 7.6 ms pinned).
faiss.omp_set_num_threads(1)
_pinned = threading.local()


def _one_thread() -> None:
    """Run this thread's FAISS calls on one OpenMP thread (once per thread)."""
    if not getattr(_pinned, "done", False):
        faiss.omp_set_num_threads(1)
        _pinned.done = True


LANG_SLOTS = 32
"""Language slots appended to every vector; languages beyond the last slot share it."""

INDEX_KINDS = ("flat", "hnsw")


@dataclass
class Manifest:
    """What an index file holds and what built it."""

    model_id: str
    dim: int
    generation: int
    count: int
    store_seq: int
    kind: str = "flat"
    lang_slots: dict[str, int] = field(default_factory=dict)
    faiss_version: str = field(default_factory=lambda: str(faiss.__version__))
    numpy_version: str = field(default_factory=lambda: np.__version__)
    python_version: str = field(default_factory=platform.python_version)
    built_at: str = ""
    saved_at: str = ""


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class VectorIndex:
    """A FAISS index over passage vectors with language slots; callers serialise writes."""

    def __init__(self, dim: int, *, kind: str = "flat", hnsw_m: int = 32, ef_search: int = 256) -> None:
        if kind not in INDEX_KINDS:
            raise ValueError(f"unknown index kind {kind!r}; expected one of {INDEX_KINDS}")
        self.dim = dim
        self.kind = kind
        self.ef_search = ef_search
        self.width = dim + LANG_SLOTS
        self.lang_slots: dict[str, int] = {}
        self._slot_lock = threading.Lock()
        if kind == "flat":
            self._index: Any = faiss.IndexIDMap2(faiss.IndexFlatIP(self.width))
            self._deleted: set[int] = set()
        else:
            hnsw = faiss.IndexHNSWFlat(self.width, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            hnsw.hnsw.efConstruction = 80
            self._index = faiss.IndexIDMap2(hnsw)
            self._deleted = set()

    # ---- language slots ---------------------------------------------------------------------
    def slot(self, language: str) -> int:
        """The slot of a language, assigning the next free one on first sight."""
        with self._slot_lock:
            s = self.lang_slots.get(language)
            if s is None:
                s = min(len(self.lang_slots), LANG_SLOTS - 1)
                self.lang_slots[language] = s
            return s

    def _augment(self, vectors: npt.NDArray[np.float32], languages: list[str]) -> npt.NDArray[np.float32]:
        out = np.zeros((len(vectors), self.width), dtype=np.float32)
        out[:, : self.dim] = vectors
        for i, lang in enumerate(languages):
            out[i, self.dim + self.slot(lang)] = 1.0
        return out

    # ---- writes ------------------------------------------------------------------------------
    def add(self, ids: npt.NDArray[np.int64], vectors: npt.NDArray[np.float32], languages: list[str]) -> None:
        """Add vectors under explicit ids."""
        if len(ids) == 0:
            return
        if vectors.shape[1] != self.dim:
            raise ValueError(f"vector dimension {vectors.shape[1]} != index dimension {self.dim}")
        _one_thread()
        self._index.add_with_ids(self._augment(vectors, languages), np.ascontiguousarray(ids, dtype=np.int64))

    def remove(self, ids: npt.NDArray[np.int64] | list[int]) -> int:
        """Remove ids; HNSW cannot delete in place, so there they become tombstones filtered at search."""
        arr = np.ascontiguousarray(ids, dtype=np.int64)
        if len(arr) == 0:
            return 0
        if self.kind == "flat":
            _one_thread()
            return int(self._index.remove_ids(arr))
        present = set(self.ids().tolist())
        gone = {int(i) for i in arr if int(i) in present}
        self._deleted |= gone
        return len(gone)

    # ---- reads -------------------------------------------------------------------------------
    @property
    def ntotal(self) -> int:
        """Live vectors."""
        return int(self._index.ntotal) - len(self._deleted)

    def ids(self) -> npt.NDArray[np.int64]:
        """Every live id."""
        all_ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        if not self._deleted:
            return all_ids
        return all_ids[~np.isin(all_ids, np.fromiter(self._deleted, dtype=np.int64))]

    def reconstruct(
        self, ids: npt.NDArray[np.int64] | list[int]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """(passage vectors, language slots) of ids in the index; RuntimeError for an unknown id."""
        arr = np.ascontiguousarray(ids, dtype=np.int64)
        if len(arr) == 0:
            return np.zeros((0, self.dim), dtype=np.float32), np.zeros(0, dtype=np.int64)
        full = np.asarray(self._index.reconstruct_batch(arr), dtype=np.float32)
        slots = np.argmax(full[:, self.dim :], axis=1).astype(np.int64)
        return np.ascontiguousarray(full[:, : self.dim]), slots

    def search(
        self,
        query: npt.NDArray[np.float32],
        k: int,
        *,
        lang_offsets: npt.NDArray[np.float32] | None = None,
        allowed: npt.NDArray[np.int64] | None = None,
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """Top-k (scores, ids) for one query; `lang_offsets[slot]` is subtracted per language slot."""
        q = np.zeros((1, self.width), dtype=np.float32)
        q[0, : self.dim] = query
        if lang_offsets is not None:
            q[0, self.dim :] = -lang_offsets
        if self._index.ntotal == 0 or k <= 0:
            return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
        params: Any = None
        sel: Any = None
        excluded = self._deleted
        if allowed is not None:
            if excluded:
                allowed = allowed[~np.isin(allowed, np.fromiter(excluded, dtype=np.int64))]
            if len(allowed) == 0:
                return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
            sel = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
        elif excluded:
            sel = faiss.IDSelectorNot(faiss.IDSelectorBatch(np.fromiter(excluded, dtype=np.int64)))
        if self.kind == "hnsw":
            params = _faiss.SearchParametersHNSW(efSearch=max(self.ef_search, k))
            if sel is not None:
                params.sel = sel
        elif sel is not None:
            params = _faiss.SearchParameters(sel=sel)
        _one_thread()
        scores, ids = self._index.search(q, k, params=params)
        keep = ids[0] >= 0
        return scores[0][keep].astype(np.float32), ids[0][keep].astype(np.int64)

    # ---- persistence -------------------------------------------------------------------------
    def save(self, directory: Path, manifest: Manifest) -> None:
        """Write index then manifest atomically (temp file + os.replace)."""
        directory.mkdir(parents=True, exist_ok=True)
        manifest.count = self.ntotal
        manifest.kind = self.kind
        manifest.dim = self.dim
        manifest.lang_slots = dict(self.lang_slots)
        manifest.saved_at = _now()
        if self._deleted:
            self._compact()
        tmp = directory / f".vectors.faiss.{os.getpid()}.tmp"
        faiss.write_index(self._index, str(tmp))
        _fsync_replace(tmp, directory / "vectors.faiss")
        data = json.dumps(asdict(manifest), indent=2, sort_keys=True).encode()
        tmpm = directory / f".vectors.json.{os.getpid()}.tmp"
        tmpm.write_bytes(data)
        _fsync_replace(tmpm, directory / "vectors.json")

    def _compact(self) -> None:
        """Rebuild an HNSW index without its tombstones (at save time)."""
        ids = self.ids()
        vecs = np.vstack([self._index.reconstruct(int(i)) for i in ids]) if len(ids) else None
        fresh = VectorIndex(self.dim, kind=self.kind, ef_search=self.ef_search)
        fresh.lang_slots = self.lang_slots
        if vecs is not None:
            fresh._index.add_with_ids(vecs, ids)
        self._index = fresh._index
        self._deleted = set()

    @classmethod
    def load(cls, directory: Path) -> tuple[VectorIndex, Manifest] | None:
        """Load an index and its manifest; None if either is missing or unreadable."""
        try:
            manifest = Manifest(**json.loads((directory / "vectors.json").read_text()))
            raw = faiss.read_index(str(directory / "vectors.faiss"))
        except (OSError, ValueError, TypeError, RuntimeError):
            return None
        if raw.d != manifest.dim + LANG_SLOTS:
            return None
        vi = cls(manifest.dim, kind=manifest.kind)
        vi._index = raw
        vi.lang_slots = dict(manifest.lang_slots)
        return vi, manifest


def _fsync_replace(tmp: Path, dest: Path) -> None:
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, dest)
    dfd = os.open(dest.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
