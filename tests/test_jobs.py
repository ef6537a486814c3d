"""The job runner: one thread per job, one job of a kind at a time, public errors; racing reindexes;
records that outlive the process (a reindex cut off by kill -9 reads `failed` after the restart)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from citesearch.api.app import create_app
from citesearch.api.jobs import INTERRUPTED, KEEP, JobConflictError, JobError, JobRunner
from citesearch.api.settings import Settings
from citesearch.embeddings import Embedder
from citesearch.embeddings.progress import Progress
from tests.test_server import ServeProcess, wait_for


def blocked_until(gate: threading.Event) -> Any:
    def work(progress: Progress) -> str:
        progress(0.5, "waiting")
        gate.wait()
        return "done"

    return work


def test_one_job_of_a_kind_at_a_time() -> None:
    runner = JobRunner()
    gate = threading.Event()
    first = runner.submit_exclusive("reindex", blocked_until(gate))
    with pytest.raises(JobConflictError) as conflict:
        runner.submit_exclusive("reindex", blocked_until(gate))
    assert conflict.value.job is first
    other = runner.submit_exclusive("export", lambda _p: "other kind")  # another kind is not a conflict
    gate.set()
    assert first.done.wait(timeout=30) and other.done.wait(timeout=30)
    assert (first.status, first.result, first.progress) == ("succeeded", "done", 1.0)
    again = runner.submit_exclusive("reindex", lambda _p: None)  # finished jobs do not block
    assert again.done.wait(timeout=30) and again.status == "succeeded"


def test_racing_submissions_register_exactly_one_job() -> None:
    runner = JobRunner()
    gate = threading.Event()
    n = 8
    barrier = threading.Barrier(n)
    outcomes: list[str] = []
    lock = threading.Lock()

    def submit() -> None:
        barrier.wait()
        try:
            runner.submit_exclusive("reindex", blocked_until(gate))
            outcome = "accepted"
        except JobConflictError:
            outcome = "conflict"
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=submit) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    gate.set()
    assert sorted(outcomes) == ["accepted"] + ["conflict"] * (n - 1)
    job = runner.active()
    assert job is None or job.done.wait(timeout=30)


def test_failed_jobs_keep_a_public_error_and_log_the_rest(caplog: pytest.LogCaptureFixture) -> None:
    runner = JobRunner()

    def leaky(_p: Progress) -> None:
        raise OSError("[Errno 2] No such file: '/srv/secret/models/x/config.json'")

    def explained(_p: Progress) -> None:
        raise JobError("model 'x' could not be loaded")

    a = runner.submit_exclusive("reindex", leaky)
    assert a.done.wait(timeout=30)
    b = runner.submit_exclusive("reindex", explained)
    assert b.done.wait(timeout=30)
    assert a.status == "failed" and a.error is not None and "/srv/secret" not in a.error
    assert "OSError" in a.error
    assert b.error == "model 'x' could not be loaded"
    assert "/srv/secret" in caplog.text  # the details are in the log


def test_only_the_last_finished_jobs_are_kept() -> None:
    runner = JobRunner()
    jobs = []
    for _ in range(KEEP + 5):
        job = runner.submit_exclusive("tick", lambda _p: None)
        assert job.done.wait(timeout=30)
        jobs.append(job)
    assert runner.get(jobs[0].id) is None and runner.get(jobs[-1].id) is jobs[-1]


def test_two_racing_reindex_requests_get_one_202_and_one_409(tmp_path: Path, embedder: Embedder) -> None:
    gate = threading.Event()

    def factory(model: str | None) -> Embedder:
        if model is not None:  # the reindex's model: held until both requests have been answered
            gate.wait()
        return embedder

    app = create_app(Settings(data_dir=tmp_path / "data"), embedder_factory=factory)
    barrier = threading.Barrier(2)
    answers: list[Any] = []
    lock = threading.Lock()
    with TestClient(app) as client:

        def post() -> None:
            barrier.wait()
            resp = client.post("/v1/reindex", json={"model": "multilingual-e5-small"})
            with lock:
                answers.append(resp)

        threads = [threading.Thread(target=post) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        gate.set()
        assert sorted(r.status_code for r in answers) == [202, 409], [r.text for r in answers]
        accepted = next(r for r in answers if r.status_code == 202).json()
        refused = next(r for r in answers if r.status_code == 409).json()["error"]
        assert refused["code"] == "conflict" and refused["details"] == [{"job_id": accepted["job_id"]}]
        job = app.state.citesearch.jobs.get(accepted["job_id"])
        assert job is not None and job.done.wait(timeout=300) and job.status == "succeeded"


def test_records_outlive_the_runner_and_a_cut_off_job_reads_failed(tmp_path: Path) -> None:
    path = tmp_path / "jobs.json"
    first = JobRunner()
    assert first.open(path) == 0
    done = first.submit_exclusive("reindex", lambda p: p(1.0, "all"))
    assert done.done.wait(timeout=30)
    gate = threading.Event()
    running = first.submit_exclusive("reindex", blocked_until(gate))
    wait_for(lambda: running.status == "running", what="the job to start")
    try:
        # What a restarted server finds: the first process's records, one job still marked running.
        after = JobRunner()
        assert after.open(path) == 1
        kept = after.get(done.id)
        assert kept is not None and (kept.status, kept.progress, kept.message) == ("succeeded", 1.0, "all")
        cut = after.get(running.id)
        assert cut is not None and (cut.status, cut.error) == ("failed", INTERRUPTED)
        assert cut.done.is_set() and after.active() is None
        again = after.submit_exclusive("reindex", lambda _p: None)  # not a conflict any more
        assert again.done.wait(timeout=30)
        assert [r["status"] for r in json.loads(path.read_text())["jobs"]] == [
            "succeeded",
            "failed",
            "succeeded",
        ]
    finally:
        gate.set()
        assert running.done.wait(timeout=30)


def test_unreadable_records_are_replaced(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "jobs.json"
    path.write_text('{"jobs": [{"id": "x", "status": "exploded"}]}')
    runner = JobRunner()
    assert runner.open(path) == 0 and runner.get("x") is None
    assert "could not be read" in caplog.text
    assert json.loads(path.read_text()) == {"jobs": []}


@pytest.mark.slow
def test_a_reindex_cut_off_by_kill_9_reads_failed_after_the_restart(tmp_path: Path) -> None:
    data = tmp_path / "d"
    articles = [
        {
            "id": f"r-{i}",
            "text": f"Report {i}: the council met on day {i} and approved budget line {i}. "
            f"Members debated proposal {i} at length before the vote on the {i}th item.",
            "language": "en",
        }
        for i in range(60)
    ]
    serve = ServeProcess(data)
    try:
        with httpx.Client(base_url=serve.base, timeout=120) as http:
            assert http.post("/v1/articles", json={"articles": articles}).status_code == 200
            finished = http.post("/v1/reindex").json()["job_id"]
            wait_for(lambda: http.get(f"/v1/jobs/{finished}").json()["status"] == "succeeded", timeout=300)
            cut = http.post("/v1/reindex").json()["job_id"]
            wait_for(lambda: http.get(f"/v1/jobs/{cut}").json()["status"] == "running", what="the reindex")
            serve.kill9()  # mid-reindex (60 articles take seconds to embed again)
    finally:
        serve.stop()
    restarted = ServeProcess(data)
    try:
        with httpx.Client(base_url=restarted.base, timeout=60) as http:
            before = http.get(f"/v1/jobs/{finished}").json()
            after = http.get(f"/v1/jobs/{cut}")
            stats = http.get("/v1/stats").json()
        assert before["status"] == "succeeded" and before["progress"] == 1.0
        assert after.status_code == 200
        assert (after.json()["status"], after.json()["error"]) == ("failed", INTERRUPTED)
        assert (stats["generation"], stats["articles"], stats["stale_passages"]) == (2, 60, 0)
    finally:
        restarted.stop()
