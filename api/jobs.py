"""Background jobs (full reindex) with status and progress that the API polls.

Each job runs on a thread of its own, started by `submit_exclusive`; the runner's `_serial` lock
lets one job do its work at a time (the others wait on the lock, still `queued`). A failed job
keeps a public error message; the exception itself goes to the log, since its text may name
server paths.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from citesearch.embeddings.progress import Progress
from citesearch.index.errors import ConflictError

if TYPE_CHECKING:
    from citesearch.index.service import Encoder, SearchService

log = logging.getLogger("citesearch.api")

JobStatus = Literal["queued", "running", "succeeded", "failed"]
Work = Callable[[Progress], object]
KEEP = 100
"""Finished jobs kept for polling."""


class JobError(Exception):
    """A job failure whose message is safe to show to clients (no paths, no internals)."""


class JobConflictError(ConflictError):
    """A job of the same kind is already queued or running (`.job`)."""

    def __init__(self, job: Job) -> None:
        super().__init__(f"a {job.kind} is already {job.status}")
        self.job = job


@dataclass
class Job:
    """One unit of long work."""

    id: str
    kind: str
    status: JobStatus = "queued"
    progress: float = 0.0
    message: str = ""
    error: str | None = None
    result: object = None
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def active(self) -> bool:
        """Queued or running."""
        return self.status in ("queued", "running")


class JobRunner:
    """Starts one thread per job; jobs take turns on one lock; the last `KEEP` are kept for polling."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()  # guards _jobs; never held while a job works
        self._serial = threading.Lock()  # held by the job doing its work

    def submit_exclusive(self, kind: str, work: Work) -> Job:
        """Start `work(progress)` as a job of `kind` and return it at once.

        Raises JobConflictError when a job of that kind is queued or running; the check and the
        registration happen under one lock, so of two racing submissions exactly one wins.
        """
        job = Job(id=uuid.uuid4().hex, kind=kind)
        with self._lock:
            for other in self._jobs.values():
                if other.kind == kind and other.active:
                    raise JobConflictError(other)
            self._jobs[job.id] = job
            self._forget_old()
        threading.Thread(target=self._run, args=(job, work), name=f"job-{kind}", daemon=True).start()
        return job

    def _forget_old(self) -> None:
        finished = [j for j in self._jobs.values() if j.done.is_set()]
        for old in sorted(finished, key=lambda j: j.created_at)[: max(0, len(self._jobs) - KEEP)]:
            del self._jobs[old.id]

    def _run(self, job: Job, work: Work) -> None:
        with self._serial:
            job.status = "running"
            job.started_at = time.time()

            def progress(fraction: float, message: str) -> None:
                job.progress = max(0.0, min(1.0, fraction))
                job.message = message

            try:
                job.result = work(progress)
                job.progress = 1.0
                job.status = "succeeded"
            except JobError as exc:
                log.warning("job %s (%s) failed: %s", job.id, job.kind, exc)
                job.error = str(exc)
                job.status = "failed"
            except Exception as exc:
                log.exception("job %s (%s) failed", job.id, job.kind)
                job.error = f"the {job.kind} failed ({type(exc).__name__}); the server log has the details"
                job.status = "failed"
            finally:
                job.finished_at = time.time()
                job.done.set()

    def get(self, job_id: str) -> Job | None:
        """A job by id, or None."""
        with self._lock:
            return self._jobs.get(job_id)

    def active(self) -> Job | None:
        """A queued or running job, if any."""
        with self._lock:
            return next((j for j in self._jobs.values() if j.active), None)


def reindex_work(
    service: SearchService, load_model: Callable[[str], Encoder], model: tuple[str, str] | None = None
) -> Work:
    """The work of a reindex: load `model` ((name the client gave, source to load)) if any, rebuild.

    A model that fails to load fails the job with "model 'name' could not be loaded"; the
    exception, which may name server paths, goes to the log only.
    """

    def work(progress: Progress) -> int:
        embedder: Encoder | None = None
        if model is not None:
            name, source = model
            try:
                embedder = load_model(source)
            except Exception as exc:
                log.exception("reindex: model %r could not be loaded", name)
                raise JobError(f"model {name!r} could not be loaded") from exc
        return service.reindex(embedder, progress, model_name=None if model is None else model[0])

    return work
