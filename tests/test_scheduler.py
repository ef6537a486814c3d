"""The inference scheduler: questions go before queued write work, passes are shared, results exact."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import ClassVar

import numpy as np
import numpy.typing as npt
import pytest

from citesearch.embeddings import Embedder
from citesearch.embeddings.scheduler import InferenceScheduler, Priority, SchedulerClosedError
from tests.fakes import FakeEncoder


class GatedEncoder(FakeEncoder):
    """Holds its first passage pass until released, so a test can queue work behind it."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def encode_passages(self, texts: list[str]) -> npt.NDArray[np.float32]:
        if not self.entered.is_set():
            self.entered.set()
            assert self.release.wait(60)
        return super().encode_passages(texts)


@pytest.fixture
def scheduler() -> Iterator[InferenceScheduler]:
    s = InferenceScheduler()
    yield s
    s.close()


def _passages(n: int) -> list[str]:
    return [f"passage {i} about the bridge over river {i % 7} " * 20 for i in range(n)]


def test_questions_overtake_queued_write_slices(scheduler: InferenceScheduler) -> None:
    enc = GatedEncoder()
    texts = _passages(24)
    writes: dict[str, npt.NDArray[np.float32]] = {}
    writer = threading.Thread(target=lambda: writes.setdefault("v", scheduler.encode_passages(enc, texts)))
    writer.start()
    assert enc.entered.wait(60)  # the first slice is running; the rest wait
    n_slices = len(scheduler._slice(enc.count_tokens_batch(texts)))
    assert n_slices >= 3
    answers: dict[int, npt.NDArray[np.float32]] = {}
    askers = [
        threading.Thread(
            target=lambda i=i: answers.setdefault(i, scheduler.encode_query(enc, f"question {i}"))
        )
        for i in range(5)
    ]
    for t in askers:
        t.start()
    assert scheduler.wait_queued(queries=5, slices=n_slices - 1)
    enc.release.set()
    for t in [writer, *askers]:
        t.join(60)
    # The slice in progress, then all five questions in one pass, then the rest of the write.
    assert enc.calls[0][0] == "passages"
    assert enc.calls[1] == ("queries", 5)
    assert all(kind == "passages" for kind, _ in enc.calls[2:])
    assert scheduler.stats.queries_ahead_of_writes == 1
    assert np.allclose(writes["v"], FakeEncoder().encode_passages(texts))
    for i in range(5):
        assert np.allclose(answers[i], FakeEncoder().encode_queries([f"question {i}"])[0])


def test_live_writes_go_before_a_rebuild(scheduler: InferenceScheduler) -> None:
    enc = GatedEncoder()
    rebuild_texts, live_texts = _passages(12), ["live passage " * 10]
    done: list[str] = []

    def run(name: str, texts: list[str], priority: Priority) -> None:
        scheduler.encode_passages(enc, texts, priority)
        done.append(name)

    rebuild = threading.Thread(target=run, args=("rebuild", rebuild_texts, Priority.REBUILD))
    rebuild.start()
    assert enc.entered.wait(60)
    live = threading.Thread(target=run, args=("live", live_texts, Priority.WRITE))
    live.start()
    assert scheduler.wait_queued(slices=2)
    enc.release.set()
    rebuild.join(60)
    live.join(60)
    assert done == ["live", "rebuild"]


def test_slices_respect_the_token_budget(scheduler: InferenceScheduler) -> None:
    enc = FakeEncoder()
    texts = _passages(40)
    tokens = enc.count_tokens_batch(texts)
    slices = scheduler._slice(tokens)
    assert sorted(i for idx, _ in slices for i in idx) == list(range(40))
    for idx, width in slices:
        assert width == max(tokens[i] for i in idx)
        assert len(idx) == 1 or width * len(idx) <= scheduler.slice_tokens()


def test_concurrent_questions_share_a_pass_with_the_real_model(
    scheduler: InferenceScheduler, embedder: Embedder
) -> None:
    """16 questions at once: the first alone, the 15 queued behind it together; same vectors."""
    questions = [f"What happened to bridge number {i} in {1900 + 7 * i}?" for i in range(16)]
    gate = GatedEncoder()  # occupies the worker with one passage slice while the questions queue
    blocker = threading.Thread(target=lambda: scheduler.encode_passages(gate, ["hold"]))
    blocker.start()
    assert gate.entered.wait(60)
    got: dict[int, npt.NDArray[np.float32]] = {}
    askers = [
        threading.Thread(target=lambda i=i: got.setdefault(i, scheduler.encode_query(embedder, questions[i])))
        for i in range(16)
    ]
    for t in askers:
        t.start()
    assert scheduler.wait_queued(queries=16)
    gate.release.set()
    for t in [blocker, *askers]:
        t.join(60)
    assert scheduler.stats.query_passes == 1 and scheduler.stats.queries == 16
    alone = embedder.encode_queries(questions)
    for i in range(16):
        assert float(got[i] @ alone[i]) > 0.999


def test_sliced_passages_equal_one_call_with_the_real_model(
    scheduler: InferenceScheduler, embedder: Embedder
) -> None:
    texts = [
        f"The bridge {i} was opened in {1900 + i} after {i + 2} years of work. " * (1 + i % 9)
        for i in range(20)
    ]
    sliced = scheduler.encode_passages(embedder, texts)
    assert scheduler.stats.write_slices > 1
    whole = embedder.encode_passages(texts)
    assert float(np.min(np.sum(sliced * whole, axis=1))) > 0.999


def test_an_encoding_error_reaches_every_caller_of_the_pass(scheduler: InferenceScheduler) -> None:
    class Broken(FakeEncoder):
        def encode_queries(self, texts: list[str]) -> npt.NDArray[np.float32]:
            raise RuntimeError("model gone")

    with pytest.raises(RuntimeError, match="model gone"):
        scheduler.encode_query(Broken(), "anything")
    assert scheduler.encode_query(FakeEncoder(), "still serving").shape == (32,)


def test_closed_scheduler_refuses_work() -> None:
    s = InferenceScheduler()
    s.close()
    with pytest.raises(SchedulerClosedError):
        s.encode_query(FakeEncoder(), "late")


def test_a_reindex_is_not_starved_by_live_writes(scheduler: InferenceScheduler) -> None:
    class Recording(GatedEncoder):
        order: ClassVar[list[str]] = []

        def encode_passages(self, texts: list[str]) -> npt.NDArray[np.float32]:
            out = super().encode_passages(texts)
            self.order.extend(t.split()[0] for t in texts)
            return out

    enc = Recording()
    gate = threading.Thread(target=lambda: scheduler.encode_passages(enc, ["gate " * 300]))
    gate.start()
    assert enc.entered.wait(60)
    long = " word" * 300  # one passage per slice
    live = threading.Thread(
        target=lambda: scheduler.encode_passages(enc, [f"live{i}{long}" for i in range(6)])
    )
    rebuild = threading.Thread(
        target=lambda: scheduler.encode_passages(
            enc, [f"rebuild{i}{long}" for i in range(3)], Priority.REBUILD
        )
    )
    live.start()
    rebuild.start()
    assert scheduler.wait_queued(slices=9)
    enc.release.set()
    for t in (gate, live, rebuild):
        t.join(60)
    kinds = ["R" if w.startswith("rebuild") else "W" for w in enc.order[1:]]
    assert kinds == ["W", "W", "R", "W", "W", "R", "W", "W", "R"]


class GatedQueries(FakeEncoder):
    """Records the thread of every question pass and holds the first until released."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[str] = []
        self.entered = threading.Event()
        self.release = threading.Event()

    def encode_queries(self, texts: list[str]) -> npt.NDArray[np.float32]:
        self.threads.append(threading.current_thread().name)
        if not self.entered.is_set():
            self.entered.set()
            assert self.release.wait(60)
        return super().encode_queries(texts)


def test_a_question_on_an_idle_scheduler_runs_in_its_callers_thread(scheduler: InferenceScheduler) -> None:
    """No hand-over when nothing runs or waits; work arriving meanwhile waits for that pass, then
    the worker takes it as after any pass."""
    enc = GatedQueries()
    first: dict[str, npt.NDArray[np.float32]] = {}
    asker = threading.Thread(
        target=lambda: first.setdefault("v", scheduler.encode_query(enc, "q0")), name="asker"
    )
    asker.start()
    assert enc.entered.wait(60)  # running inline in the asker's thread
    later: dict[int, npt.NDArray[np.float32]] = {}
    others = [
        threading.Thread(target=lambda i=i: later.setdefault(i, scheduler.encode_query(enc, f"q{i}")))
        for i in (1, 2)
    ]
    writer = threading.Thread(target=lambda: scheduler.encode_passages(enc, _passages(2)))
    for t in [*others, writer]:
        t.start()
    assert scheduler.wait_queued(queries=2, slices=1)  # they wait: one pass at a time
    assert enc.threads == ["asker"]
    enc.release.set()
    for t in [asker, *others, writer]:
        t.join(60)
    assert enc.threads == ["asker", "inference"]  # the two waiting questions shared the worker's pass
    # The inline pass spent the questions' share, so a waiting write slice went next, and earned
    # the waiting questions the pass after it (QUERY_SHARE).
    assert enc.calls[0] == ("queries", 1) and enc.calls[1][0] == "passages"
    assert enc.calls[2] == ("queries", 2)
    assert np.allclose(first["v"], FakeEncoder().encode_queries(["q0"])[0])
    assert np.allclose(later[2], FakeEncoder().encode_queries(["q2"])[0])
    assert scheduler.stats.query_passes == 2 and scheduler.stats.queries == 3
