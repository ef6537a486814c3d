"""The one place forward passes run: questions first, write work in short slices.

A CPU runs one forward pass well at a time; two at once only fight for the cores. So every model
call of a service goes through one `InferenceScheduler`, whose single worker thread takes, each
time it is free:

1. every question waiting (for the same model), encoded together in one pass: concurrent
   questions share forward passes, and a lone question waits for no batch to fill;
2. otherwise the next slice of write work (ingest before reindex). A write's passages are cut
   into slices sized to take about `slice_ms` each (measured tokens per second), so a question
   that arrives during a bulk ingest or a reindex waits at most for the slice in progress.

Neither starves the other: when both wait, questions get QUERY_SHARE of the model's time and
write slices the rest (a slice of d seconds earns the questions behind it d·share/(1-share)
seconds of passes before the next slice), and a reindex gets every REBUILD_EVERY-th slice while
live writes keep coming.

A question that finds no pass running and nothing waiting runs at once in its caller's thread
(the one pass running then; whatever arrives meanwhile waits for it as for a worker's pass):
handing it to the worker cost two thread wake-ups, measured at 0.3-0.8 ms of a ~2 ms pass.

Callers block until their own vectors are ready; results are exactly what the encoder returns
for the same texts (slicing changes only how passages are grouped into passes).
"""

from __future__ import annotations

import enum
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]

MIN_SLICE_TOKENS = 256
"""Smallest write slice in padded tokens (about one passage): below this passes get inefficient."""
MAX_SLICE_TOKENS = 4096
"""Largest write slice in padded tokens (also the embedder's own largest batch)."""
MAX_QUERY_BATCH = 32
"""Most questions encoded in one pass."""
QUERY_SHARE = 0.5
"""Share of the model's time questions get while write work also waits (they go first until then)."""
REBUILD_EVERY = 3
"""While live writes and a reindex both wait, every this-many-th slice is the reindex's."""


class TextEncoder(Protocol):
    """What the scheduler needs from a model (`embeddings.Embedder` is the real one)."""

    def encode_queries(self, texts: list[str]) -> Vectors: ...
    def encode_passages(self, texts: list[str]) -> Vectors: ...
    def count_tokens_batch(self, texts: list[str]) -> list[int]: ...


class Priority(enum.IntEnum):
    """Who goes first when the worker is free: lower first."""

    QUERY = 0
    WRITE = 1
    REBUILD = 2


@dataclass(eq=False)
class _Task:
    encoder: TextEncoder | None
    priority: Priority
    texts: list[str]
    order: int
    is_query: bool = False
    work: Callable[[], Any] | None = None
    """A question's own model work other than its encoding (the answer model reading sentences)."""
    tokens: int = 0
    slices_at_submit: int = 0
    result: Vectors | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def wait(self) -> Any:
        self.done.wait()
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


@dataclass
class SchedulerStats:
    """Counters for tests, metrics and benchmarks."""

    query_passes: int = 0
    queries: int = 0
    write_slices: int = 0
    passages: int = 0
    queries_ahead_of_writes: int = 0
    """Passes of questions run while write slices were waiting: the scheduling at work."""
    slices_started: int = 0
    max_slices_waited: int = 0
    """Most write slices started while any one question waited (1 at most: the one in progress)."""


class SchedulerClosedError(RuntimeError):
    """The scheduler was closed before this work ran."""


class InferenceScheduler:
    """Runs every forward pass of a service on one worker thread, questions first."""

    def __init__(self, *, slice_ms: float = 100.0, start_tokens_per_s: float = 2560.0) -> None:
        self.slice_ms = slice_ms
        self._tokens_per_s = start_tokens_per_s
        self._cond = threading.Condition()
        self._queries: list[_Task] = []
        self._slices: list[_Task] = []
        self._order = itertools.count()
        self._closed = False
        self._query_budget = 0.0  # seconds of question passes due before the next waiting slice
        self._writes_in_a_row = 0  # live-write slices run while reindex slices waited
        self._busy = False  # a pass is running (on the worker, or inline in a caller's thread)
        self.stats = SchedulerStats()
        self._worker = threading.Thread(target=self._run, name="inference", daemon=True)
        self._worker.start()

    # ---- callers -------------------------------------------------------------------------------
    def encode_query(self, encoder: TextEncoder, text: str) -> Vectors:
        """One question's vector, shared with the questions that arrive meanwhile.

        When no pass runs and nothing waits, the question runs at once in the caller's thread:
        the worker would have taken it first anyway, and handing it over costs two thread
        wake-ups (0.3-0.8 ms of a ~2 ms pass, more while the early BM25 holds the GIL). Work
        that arrives meanwhile waits for it as for any pass.
        """
        task = _Task(encoder, Priority.QUERY, [text], next(self._order), is_query=True)
        with self._cond:
            inline = not (self._closed or self._busy or self._queries or self._slices)
            inline = inline and threading.current_thread() is not self._worker
            self._busy = self._busy or inline
        if not inline:
            vec: Vectors = self._submit([task])[0]
            return vec
        try:
            self._execute([task])
        finally:
            self._idle()
        out: Vectors = task.wait()
        return out

    def run_query_work(self, work: Callable[[], Any]) -> Any:
        """Run a question's other model work (the answer model reading sentences) with a question's
        priority: at once when nothing runs or waits, else ahead of write slices like a question."""
        task = _Task(None, Priority.QUERY, [], next(self._order), is_query=True, work=work)
        with self._cond:
            inline = not (self._closed or self._busy or self._queries or self._slices)
            inline = inline and threading.current_thread() is not self._worker
            self._busy = self._busy or inline
        if not inline:
            return self._submit([task])[0]
        try:
            self._execute([task])
        finally:
            self._idle()
        return task.wait()

    def _idle(self) -> None:
        """A pass ended: the worker may start the next."""
        with self._cond:
            self._busy = False
            self._cond.notify_all()

    def encode_passages(
        self, encoder: TextEncoder, texts: list[str], priority: Priority = Priority.WRITE
    ) -> Vectors:
        """Passage vectors in `texts` order, in slices run by priority (QUERY: a question's own work)."""
        if not texts:
            return encoder.encode_passages([])
        slices = self._slice(encoder.count_tokens_batch(texts))
        tasks = [
            _Task(encoder, priority, [texts[i] for i in idx], next(self._order), tokens=width * len(idx))
            for idx, width in slices
        ]
        parts = self._submit(tasks)
        out = np.empty((len(texts), parts[0].shape[1]), dtype=np.float32)
        for (idx, _), vecs in zip(slices, parts, strict=True):
            out[idx] = vecs
        return out

    def wait_queued(self, *, queries: int = 0, slices: int = 0, timeout: float = 60.0) -> bool:
        """Block until at least this much work waits (False on timeout): for tests and probes."""
        with self._cond:
            return self._cond.wait_for(
                lambda: len(self._queries) >= queries and len(self._slices) >= slices, timeout
            )

    def close(self) -> None:
        """Stop the worker; work not yet started fails with SchedulerClosedError."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._worker.join(timeout=60)

    # ---- slicing -------------------------------------------------------------------------------
    def slice_tokens(self) -> int:
        """Padded tokens per write slice: about `slice_ms` of work at the measured rate."""
        budget = self._tokens_per_s * self.slice_ms / 1000
        return int(min(MAX_SLICE_TOKENS, max(MIN_SLICE_TOKENS, budget)))

    def _slice(self, tokens: list[int]) -> list[tuple[list[int], int]]:
        """(indexes, padded width) per slice, longest first, each within `slice_tokens()`."""
        budget = self.slice_tokens()
        out: list[tuple[list[int], int]] = []
        for i in sorted(range(len(tokens)), key=lambda i: (-tokens[i], i)):
            if out and out[-1][1] * (len(out[-1][0]) + 1) <= budget:
                out[-1][0].append(i)
            else:
                out.append(([i], tokens[i]))
        return out

    # ---- the worker ----------------------------------------------------------------------------
    def _submit(self, tasks: list[_Task]) -> list[Any]:
        if threading.current_thread() is self._worker:  # called from inside a pass: run it here
            for t in tasks:
                self._execute([t])
            return [t.wait() for t in tasks]
        with self._cond:
            if self._closed:
                raise SchedulerClosedError("the inference scheduler is closed")
            for t in tasks:
                t.slices_at_submit = self.stats.slices_started
                (self._queries if t.is_query else self._slices).append(t)
            self._slices.sort(key=lambda t: (t.priority, t.order))
            self._cond.notify_all()
        return [t.wait() for t in tasks]

    def _next(self) -> list[_Task] | None:
        """The next pass: the waiting questions of one model, else one write slice; None when closed."""
        with self._cond:
            while not self._closed and (self._busy or (not self._queries and not self._slices)):
                self._cond.wait()
            if self._closed:
                return None
            self._busy = True
            if self._queries and (not self._slices or self._query_budget > 0):
                enc = self._queries[0].encoder
                if enc is None:  # other work of a question: alone
                    batch = [self._queries[0]]
                else:
                    batch = [t for t in self._queries if t.encoder is enc][:MAX_QUERY_BATCH]
                self._queries = [t for t in self._queries if t not in batch]
                if any(t.priority > Priority.QUERY for t in self._slices):
                    self.stats.queries_ahead_of_writes += 1
                waited = max(self.stats.slices_started - t.slices_at_submit for t in batch)
                self.stats.max_slices_waited = max(self.stats.max_slices_waited, waited)
                return batch
            self.stats.slices_started += 1
            return [self._pop_slice()]

    def _pop_slice(self) -> _Task:
        """The next write slice: live writes first, but a waiting reindex every REBUILD_EVERY-th slice."""
        first = self._slices[0]
        rebuild = next((t for t in self._slices if t.priority == Priority.REBUILD), None)
        if first.priority == Priority.WRITE and rebuild is not None:
            self._writes_in_a_row += 1
            if self._writes_in_a_row >= REBUILD_EVERY:
                self._writes_in_a_row = 0
                first = rebuild
        else:
            self._writes_in_a_row = 0
        self._slices.remove(first)
        return first

    def _run(self) -> None:
        while (batch := self._next()) is not None:
            try:
                self._execute(batch)
            finally:
                self._idle()
        with self._cond:
            left, self._queries, self._slices = self._queries + self._slices, [], []
        for t in left:
            t.error = SchedulerClosedError("the inference scheduler closed before this work ran")
            t.done.set()

    def _execute(self, batch: list[_Task]) -> None:
        first = batch[0]
        t0 = time.perf_counter()
        try:
            if first.work is not None:
                first.result = first.work()
            elif first.is_query:
                assert first.encoder is not None
                vecs = first.encoder.encode_queries([t.texts[0] for t in batch])
                for t, v in zip(batch, vecs, strict=True):
                    t.result = v
                self.stats.query_passes += 1
                self.stats.queries += len(batch)
            else:
                assert first.encoder is not None
                first.result = first.encoder.encode_passages(first.texts)
                self._measured(first.tokens, time.perf_counter() - t0)
                self.stats.write_slices += 1
                self.stats.passages += len(first.texts)
        except BaseException as exc:  # every caller of this pass gets the error
            for t in batch:
                t.error = exc
        self._account(first.is_query, time.perf_counter() - t0)
        for t in batch:
            t.done.set()

    def _account(self, was_query: bool, seconds: float) -> None:
        """Questions spend their budget; a slice grants them their share of the time it took."""
        with self._cond:
            if was_query:
                self._query_budget -= seconds
            else:
                self._query_budget = seconds * QUERY_SHARE / (1 - QUERY_SHARE)

    def _measured(self, tokens: int, seconds: float) -> None:
        """Fold one slice's speed into the tokens-per-second estimate that sizes the next slices."""
        if seconds > 0 and tokens > 0:
            self._tokens_per_s = 0.7 * self._tokens_per_s + 0.3 * (tokens / seconds)
