"""Keeping the FAISS index a faithful cache of the store: start-up repair, checkpoints, the swap to HNSW.

The store is the record; the FAISS file is a checkpoint of the serving generation's vectors.
`repair` (at start-up) loads it and reconciles it with the store: vectors missing from it are
added from the stored ones (no model call), orphans dropped, an unfinished rebuild dropped, the
passages of any generation that no longer serves dropped (a switch cut short before its drop),
and articles left without passages embedded again. Every checkpoint removes the directories of
the generations that no longer serve. A background thread checkpoints the index some
seconds after the last write and, with `index_kind="auto"`, replaces a flat index that outgrew
the threshold by an HNSW one built from the stored vectors off the lock.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from citesearch.index.lexical import LEXICAL_VERSION, terms_text
from citesearch.index.state import Core
from citesearch.index.vectors import Manifest, VectorIndex
from citesearch.index.writes import Writer, now_iso

log = logging.getLogger("citesearch.index")


@dataclass
class RepairReport:
    """What the start-up check found and fixed."""

    loaded_checkpoint: bool = False
    added: int = 0
    removed: int = 0
    reembedded: list[str] = field(default_factory=list)
    dropped_build_passages: int = 0
    dropped_stale_passages: int = 0
    """Passages of generations neither serving nor being built (a switch cut short before its drop)."""
    took_ms: float = 0.0

    @property
    def changed(self) -> bool:
        """True when anything had to be fixed."""
        return bool(
            self.added
            or self.removed
            or self.reembedded
            or self.dropped_build_passages
            or self.dropped_stale_passages
        )


def reconcile(core: Core, vectors: VectorIndex, generation: int) -> tuple[int, int]:
    """Make `vectors` hold exactly the store's passages of `generation`: (added, removed)."""
    in_store = core.store.passage_ids(generation)
    in_index = vectors.ids()
    missing = np.setdiff1d(in_store, in_index, assume_unique=True)
    orphans = np.setdiff1d(in_index, in_store, assume_unique=True)
    removed = vectors.remove(orphans) if len(orphans) else 0
    added = 0
    if len(missing):
        for ids, vecs, langs in core.store.iter_vectors(generation, missing.tolist()):
            if vecs.shape[1] == vectors.dim:
                vectors.add(ids, vecs, langs)
                added += len(ids)
    return added, removed


class Maintenance:
    """Repair, checkpoints and the swap to HNSW; owns the background thread that runs them."""

    def __init__(self, core: Core, writer: Writer) -> None:
        self.core = core
        self.writer = writer
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._promoter: threading.Thread | None = None
        self._promoter_lock = threading.Lock()

    # ---- start-up ------------------------------------------------------------------------------
    def repair(self, *, reembed: bool = True) -> RepairReport:
        """Reconcile the FAISS checkpoint with the store; re-embed articles left without passages or sentences.

        `reembed=False` on a cluster replica: its store is a copy of the cluster's, so such articles
        are fetched again from the store of record (`Replica.open`), never re-embedded here.
        """
        t0 = time.perf_counter()
        report = RepairReport()
        core = self.core
        with core.write_mutex, core.lock.write():
            report.dropped_build_passages = self._drop_unfinished_build()
            with core.store.transaction() as tx:  # nothing is being built now: only the serving one stays
                report.dropped_stale_passages = tx.drop_generations_except([core.state.generation])
            state = core.state
            vectors = state.vectors
            loaded = VectorIndex.load(core.generation_dir(state.generation))
            if loaded is not None:
                idx, manifest = loaded
                if manifest.generation == state.generation and manifest.model_id == state.embedder.model_id:
                    vectors, report.loaded_checkpoint = idx, True
            report.added, report.removed = reconcile(core, vectors, state.generation)
            core.state = dataclasses.replace(state, vectors=vectors, means=core.means(state.generation))
        gen = core.state.generation
        # A store written before sentence vectors existed has passages without them: embed those again.
        stale = dict.fromkeys(
            [*core.store.articles_without_passages(gen), *core.store.articles_without_sentences(gen)]
            if reembed
            else []
        )
        for art_id in stale:
            row = core.store.get_article(art_id)
            if row is not None:
                self.writer.rewrite(row)
                report.reembedded.append(art_id)
        if report.changed or not report.loaded_checkpoint:
            self.checkpoint()
        else:
            self.prune_generation_dirs()
        report.took_ms = (time.perf_counter() - t0) * 1000
        if report.changed:
            log.warning(
                "start-up repair: %d vectors added, %d orphans removed, %d articles re-embedded, "
                "%d passages of an unfinished rebuild and %d of older generations dropped",
                report.added,
                report.removed,
                len(report.reembedded),
                report.dropped_build_passages,
                report.dropped_stale_passages,
            )
        return report

    def _drop_unfinished_build(self) -> int:
        building = self.core.store.get_meta("building")
        if building is None:
            return 0
        with self.core.store.transaction() as tx:
            dropped = tx.drop_generation(int(building))
            tx.delete_meta("building")
        return dropped

    def ensure_lexical_version(self) -> None:
        """Rewrite the stored lexical terms when `index.lexical` changed its scheme (no re-embedding)."""
        core = self.core
        if core.store.get_meta("lexical_version") == LEXICAL_VERSION:
            return
        with core.write_mutex, core.lock.write(), core.store.transaction() as tx:
            n = tx.rewrite_terms(terms_text)
            tx.set_meta("lexical_version", LEXICAL_VERSION)
        if n:
            log.warning("lexical terms of %d passages rewritten (scheme %s)", n, LEXICAL_VERSION)

    # ---- checkpoints ---------------------------------------------------------------------------
    def checkpoint(self) -> None:
        """Save the serving generation's FAISS index and its manifest."""
        core = self.core
        with core.write_mutex, core.lock.read():
            st = core.state
            manifest = Manifest(
                model_id=st.embedder.model_id,
                dim=st.embedder.dim,
                generation=st.generation,
                count=st.vectors.ntotal,
                store_seq=core.store.seq,
                built_at=core.store.get_meta(f"built:{st.generation}") or now_iso(),
            )
            st.vectors.save(core.generation_dir(st.generation), manifest)
            core.dirty_since = None
            self.prune_generation_dirs()

    def prune_generation_dirs(self) -> int:
        """Remove the checkpoint directories of every generation but the serving one; returns how many.

        Only the serving generation is ever checkpointed, so the others are leftovers of switches
        (the new generation's directory is written first, then these go).
        """
        core = self.core
        keep = core.generation_dir(core.state.generation)
        removed = 0
        with core.write_mutex:
            try:
                found = [
                    d
                    for d in keep.parent.iterdir()
                    if d.is_dir() and d.name.isascii() and d.name.isdigit() and d != keep
                ]
            except FileNotFoundError:
                return 0
            for old in found:
                try:
                    shutil.rmtree(old)
                    removed += 1
                except OSError:  # tried again at the next checkpoint
                    log.exception("could not remove the old checkpoint %s", old.name)
        if removed:
            log.info("removed the checkpoints of %d older generations", removed)
        return removed

    def start(self) -> None:
        """Start the background thread (checkpoints, and the swap to HNSW when due)."""
        self._thread = threading.Thread(target=self._loop, name="maintenance", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the background threads and save a last checkpoint if the index changed."""
        self._stop.set()
        for t in (self._thread, self._promoter):
            if t is not None:
                t.join(timeout=60)
        if self.core.dirty_since is not None:
            self.checkpoint()

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            since = self.core.dirty_since
            if since is not None and time.monotonic() - since >= self.core.config.checkpoint_every_s:
                try:
                    self.promote_if_large()
                    self.checkpoint()
                except Exception:  # retried at the next tick; the store stays the record
                    log.exception("checkpoint failed")

    # ---- the swap to HNSW ----------------------------------------------------------------------
    def _due(self) -> bool:
        cfg, st = self.core.config, self.core.state
        return (
            cfg.index_kind == "auto"
            and st.vectors.kind == "flat"
            and st.vectors.ntotal >= cfg.approx_threshold
        )

    def promote_in_background(self) -> None:
        """Start the swap to HNSW in a thread once the flat index outgrew the threshold."""
        if not self._due():
            return
        with self._promoter_lock:
            if self._promoter is not None and self._promoter.is_alive():
                return
            self._promoter = threading.Thread(target=self._promote_quietly, name="hnsw-build", daemon=True)
            self._promoter.start()

    def wait_for_background(self, timeout: float | None = None) -> None:
        """Wait for a swap to HNSW started by a write (tests, benchmarks)."""
        t = self._promoter
        if t is not None:
            t.join(timeout)

    def _promote_quietly(self) -> None:
        try:
            self.promote_if_large()
        except Exception:  # the flat index keeps serving; the checkpointer tries again
            if not self._stop.is_set():
                log.exception("switch to an HNSW index failed")

    def promote_if_large(self) -> bool:
        """Replace a flat index that outgrew the threshold by HNSW, built off the lock, then swapped."""
        if not self._due():
            return False
        core = self.core
        st = core.state
        t0 = time.perf_counter()
        fresh = VectorIndex(st.vectors.dim, kind="hnsw")
        fresh.lang_slots = dict(st.vectors.lang_slots)
        for ids, vecs, langs in core.store.iter_vectors(st.generation):
            fresh.add(ids, vecs, langs)
        with core.write_mutex, core.lock.write():
            if (
                core.state.generation != st.generation
                or core.state.vectors is not st.vectors
                or self._stop.is_set()
            ):
                return False
            reconcile(core, fresh, st.generation)
            core.state = dataclasses.replace(core.state, vectors=fresh)
            core.mark_dirty()
        log.info("switched to an HNSW index at %d passages in %.1f s", fresh.ntotal, time.perf_counter() - t0)
        self.checkpoint()
        return True
