"""Background jobs (full reindex) with status and progress that the API and CLI can poll."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

JobStatus = Literal["queued", "running", "succeeded", "failed"]
Progress = Callable[[float, str], None]


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


class JobRunner:
    """Runs jobs one at a time on a worker thread; keeps the last 100 for polling."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._serial = threading.Lock()

    def submit(self, kind: str, work: Callable[[Progress], object]) -> Job:
        """Queue `work(progress)` and return its job at once."""
        job = Job(id=uuid.uuid4().hex, kind=kind)
        with self._lock:
            self._jobs[job.id] = job
            if len(self._jobs) > 100:
                for old in sorted(self._jobs.values(), key=lambda j: j.created_at)[:-100]:
                    if old.done.is_set():
                        del self._jobs[old.id]
        threading.Thread(target=self._run, args=(job, work), name=f"job-{kind}", daemon=True).start()
        return job

    def _run(self, job: Job, work: Callable[[Progress], object]) -> None:
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
            except Exception as exc:
                job.error = f"{type(exc).__name__}: {exc}"
                job.status = "failed"
            finally:
                job.finished_at = time.time()
                job.done.set()

    def get(self, job_id: str) -> Job | None:
        """A job by id, or None."""
        with self._lock:
            return self._jobs.get(job_id)

    def active(self) -> Job | None:
        """The queued or running job, if any."""
        with self._lock:
            for job in self._jobs.values():
                if job.status in ("queued", "running"):
                    return job
        return None
