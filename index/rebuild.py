"""A full rebuild (reindex): every article split and embedded again into a new generation, then a switch.

The new generation is built beside the serving one, at rebuild priority (questions and live
writes go first), then caught up with the writes made meanwhile and switched in one store
transaction; the old generation is dropped in the next (readers hold no lock on it by then), and
its checkpoint directory goes with the new generation's first checkpoint. A failure drops the
partial build; the old generation keeps serving. A kill between the switch and the drop leaves the
old passages stored: start-up repair drops every generation that neither serves nor is being built.
"""

from __future__ import annotations

from collections.abc import Sequence

from citesearch.embeddings.progress import Progress
from citesearch.embeddings.scheduler import Priority
from citesearch.index.state import Core, Encoder, ServingState
from citesearch.index.vectors import VectorIndex
from citesearch.index.writes import Writer, add_passages, article_from_row, now_iso

BATCH_ARTICLES = 16
CATCH_UP_ROUNDS = 3
"""Rounds of catching up with concurrent writes before the final one under the write mutex."""
FINAL_CATCH_UP = 16
"""Articles few enough to re-embed while writers wait."""


class Rebuilder:
    """Builds and switches generations."""

    def __init__(self, core: Core, writer: Writer) -> None:
        self.core = core
        self.writer = writer

    def reindex(self, embedder: Encoder | None = None, progress: Progress | None = None) -> int:
        """Build a new generation (optionally with another model) while the old one serves; then switch."""
        report = progress or (lambda _f, _m: None)
        core = self.core
        embedder = embedder or core.state.embedder
        with core.write_mutex:
            new_gen = core.state.generation + 1
            with core.store.transaction() as tx:
                tx.drop_generation(new_gen)
                tx.set_meta("building", str(new_gen))
            start_seq = core.store.seq
        try:
            vectors = VectorIndex(embedder.dim, kind=core.index_kind_for(core.store.counts(new_gen - 1)[1]))
            ids = core.store.article_ids()
            report(0.0, f"rebuilding {len(ids)} articles")
            for i in range(0, len(ids), BATCH_ARTICLES):
                self._build(ids[i : i + BATCH_ARTICLES], new_gen, embedder, vectors)
                done = min(i + BATCH_ARTICLES, len(ids))
                report(0.95 * done / max(len(ids), 1), f"{done}/{len(ids)} articles")
            self._switch(new_gen, start_seq, embedder, vectors)
        except BaseException:
            with core.write_mutex, core.store.transaction() as tx:
                tx.drop_generation(new_gen)
                tx.delete_meta("building")
            raise
        report(1.0, f"generation {new_gen} serving")
        return new_gen

    def _build(self, ids: Sequence[str], gen: int, embedder: Encoder, vectors: VectorIndex) -> None:
        """Split, embed and store one batch of articles into generation `gen`."""
        store = self.core.store
        rows = [r for r in (store.get_article(a) for a in ids) if r is not None]
        prepared = self.writer.prepare([article_from_row(r) for r in rows], embedder, Priority.REBUILD)
        with self.core.write_mutex:
            # Embedding ran without a lock: skip what a writer deleted or changed meanwhile (the
            # catch-up before the switch rebuilds the changed ones from their new text).
            current = store.content_hashes([p.article.id for p in prepared])
            with store.transaction() as tx:
                for p in prepared:
                    vectors.remove(tx.delete_passages(p.article.id, gen))
                    if current.get(p.article.id) == p.article.content_hash:
                        add_passages(vectors, tx.insert_passages(p.article.id, gen, p.passages), p.passages)

    def _switch(self, new_gen: int, start_seq: int, embedder: Encoder, vectors: VectorIndex) -> None:
        """Catch up with the writes made during the build, then serve the new generation.

        Catch-up rounds run without the write mutex (writers go on) until few articles are left;
        only the last round, and the switch, hold it.
        """
        core = self.core
        seq = start_seq
        for _ in range(CATCH_UP_ROUNDS):
            mark = core.store.seq  # read first: a write committed after it is caught next round
            changed = core.store.articles_changed_since(seq)
            if len(changed) <= FINAL_CATCH_UP:
                break
            self._build(changed, new_gen, embedder, vectors)
            seq = mark
        with core.write_mutex:
            present = set(core.store.article_ids())
            changed = [a for a in core.store.articles_changed_since(seq) if a in present]
            self._build(changed, new_gen, embedder, vectors)
            orphans = set(vectors.ids().tolist()) - set(core.store.passage_ids(new_gen).tolist())
            vectors.remove(sorted(orphans))  # passages of articles deleted during the build
            with core.lock.write():
                with core.store.transaction() as tx:
                    tx.set_meta("generation", str(new_gen))
                    tx.set_meta(f"model:{new_gen}", embedder.model_id)
                    tx.set_meta(f"built:{new_gen}", now_iso())
                    tx.delete_meta("building")
                    tx.next_seq()
                core.state = ServingState(new_gen, embedder, vectors, core.means(new_gen))
                core.mark_dirty()
            # Its own transaction, after readers moved on; a kill before it commits leaves the old
            # generation stored, which start-up repair drops (Maintenance.repair).
            with core.store.transaction() as tx:
                tx.drop_generations_except([new_gen])
