"""The query-pass thread chooser: switches to the option measured cheaper, backs off tries that lose."""

from __future__ import annotations

import os

from citesearch.embeddings import Embedder
from citesearch.embeddings.threads import BURST, EXPLORE_FIRST, EXPLORE_MAX, ThreadChooser


def drive(chooser: ThreadChooser, cost: dict[int, float], passes: int) -> list[int]:
    """Run `passes` passes where a pass on t threads costs cost[t] per token; the picks made."""
    picks = []
    for _ in range(passes):
        t = chooser.pick()
        chooser.record(t, cost[t] * 100, 100)
        picks.append(t)
    return picks


def test_switches_to_the_cheaper_option_after_one_burst() -> None:
    chooser = ThreadChooser((2, 1))
    picks = drive(chooser, {2: 3.0, 1: 1.0}, EXPLORE_FIRST + BURST + 5)
    assert picks[: EXPLORE_FIRST - 1] == [2] * (EXPLORE_FIRST - 1)
    assert picks[EXPLORE_FIRST - 1 : EXPLORE_FIRST - 1 + BURST] == [1] * BURST
    assert chooser.current == 1 and chooser.switches == 1
    assert set(picks[EXPLORE_FIRST - 1 + BURST :]) == {1}


def test_a_losing_option_is_tried_ever_less_often_and_at_most_burst_passes_per_max_interval() -> None:
    chooser = ThreadChooser((2, 1))
    picks = drive(chooser, {2: 1.0, 1: 5.0}, 20 * EXPLORE_MAX)
    assert chooser.current == 2 and chooser.switches == 0
    tail = picks[-4 * EXPLORE_MAX :]
    assert tail.count(1) <= 4 * BURST + BURST
    assert tail.count(1) >= 3 * BURST  # it keeps trying: the machine may become idle


def test_follows_the_machine_when_the_costs_change() -> None:
    chooser = ThreadChooser((2, 1))
    drive(chooser, {2: 1.0, 1: 2.0}, 200)  # idle: two threads win
    assert chooser.current == 2
    drive(chooser, {2: 4.0, 1: 2.0}, 2 * EXPLORE_MAX + 10)  # another process holds a core
    assert chooser.current == 1


def test_one_option_never_tries_anything_else() -> None:
    chooser = ThreadChooser((1,))
    assert set(drive(chooser, {1: 1.0}, 100)) == {1}
    assert ThreadChooser((1, 1)).options == (1,)


def test_the_real_embedder_reports_a_thread_count_it_can_run(embedder: Embedder) -> None:
    for _ in range(EXPLORE_FIRST + BURST):
        embedder.encode_queries(["Does the H20 have a backdoor?"])
    assert embedder.query_threads in {1, max(1, len(os.sched_getaffinity(0)))}


def test_faiss_runs_on_one_openmp_thread_in_every_thread_that_calls_it() -> None:
    """OpenMP keeps its thread count per calling thread: pinning at import did not reach the server's
    worker threads, whose FAISS searches then ran on every core (and spun against the model's)."""
    import threading

    import faiss
    import numpy as np

    from citesearch.index.vectors import VectorIndex

    index = VectorIndex(8)
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((50, 8)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    index.add(np.arange(50, dtype=np.int64), vecs, ["en"] * 50)
    seen: dict[str, int] = {}

    def worker() -> None:
        seen["before"] = faiss.omp_get_max_threads()
        _, ids = index.search(vecs[3], 5)
        seen["after"] = faiss.omp_get_max_threads()
        seen["top"] = int(ids[0])

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen["after"] == 1 and seen["top"] == 3
    assert seen["before"] == max(1, len(os.sched_getaffinity(0))) or os.environ.get("OMP_NUM_THREADS")
