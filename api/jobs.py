"""Background jobs (full reindex) with status and progress that the API polls.

Each job runs on a thread of its own, started by `submit_exclusive`; the runner's `_serial` lock
lets one job do its work at a time (the others wait on the lock, still `queued`). A failed job
keeps a public error message; the exception itself goes to the log, since its text may name
server paths.

Once `open`ed on a file (the server's `jobs.json` in its data directory), the runner keeps the
records there: written when a job is queued, starts, finishes, and every few seconds of progress.
A job found queued or running when the file is opened again was cut off by a restart: it reads
`failed`, with the error `interrupted by a server restart`.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from citesearch.embeddings.progress import Progress
from citesearch.index.errors import ConflictError

if TYPE_CHECKING:
    from citesearch.index.service import Encoder, Reservation, SearchService

log = logging.getLogger("citesearch.api")

JobStatus = Literal["queued", "running", "succeeded", "failed"]
Work = Callable[[Progress], object]
KEEP = 100
"""Finished jobs kept for polling."""
INTERRUPTED = "interrupted by a server restart"
"""The error of a job that was queued or running when the server stopped."""
SAVE_PROGRESS_EVERY_S = 2.0
"""Progress is written at most this often (status changes at once)."""
_RECORD_FIELDS = (
    "id",
    "kind",
    "status",
    "progress",
    "message",
    "error",
    "created_at",
    "started_at",
    "finished_at",
)


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

    def record(self) -> dict[str, Any]:
        """What is kept of the job across restarts."""
        return {name: getattr(self, name) for name in _RECORD_FIELDS}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Job:
        """A job as it was recorded; one that was still queued or running was cut off by a restart."""
        job = cls(**{name: record[name] for name in _RECORD_FIELDS if name in record})
        if job.status not in get_args(JobStatus):
            raise ValueError(f"unknown job status {job.status!r}")
        if job.active:
            job.status, job.error, job.finished_at = "failed", INTERRUPTED, time.time()
        job.done.set()
        return job


class JobRunner:
    """Starts one thread per job; jobs take turns on one lock; the last `KEEP` are kept for polling."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()  # guards _jobs and the file; never held while a job works
        self._serial = threading.Lock()  # held by the job doing its work
        self._submitting = threading.Lock()  # held from a submission's check to its registration
        self._path: Path | None = None

    def open(self, path: Path) -> int:
        """Keep the records in `path` from now on, after reading those of the last run; returns how
        many of those were cut off by the restart. An unreadable file is logged and replaced."""
        found: list[Job] = []
        interrupted: list[Job] = []
        try:
            for record in json.loads(path.read_text(encoding="utf-8"))["jobs"]:
                job = Job.from_record(record)
                found.append(job)
                if record.get("status") in ("queued", "running"):
                    interrupted.append(job)
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError):
            log.exception("the job records in %s could not be read; starting without them", path.name)
        with self._lock:
            for job in found:
                self._jobs.setdefault(job.id, job)
            self._path = path
            self._forget_old()
            self._save()
        for job in interrupted:
            log.warning("job %s (%s) was interrupted by a server restart", job.id, job.kind)
        return len(interrupted)

    def _save(self) -> None:
        """Write every record (caller holds `_lock`): a temporary file renamed into place."""
        if self._path is None:
            return
        tmp = self._path.with_name(f".{self._path.name}.{os.getpid()}.tmp")
        try:
            records = [j.record() for j in sorted(self._jobs.values(), key=lambda j: j.created_at)]
            tmp.write_text(json.dumps({"jobs": records}, ensure_ascii=False), encoding="utf-8")
            os.replace(tmp, self._path)
        except OSError:  # the jobs go on; their records are written again at their next change
            log.exception("the job records could not be written")

    def _changed(self) -> None:
        with self._lock:
            self._save()

    def submit_exclusive(self, kind: str, work: Work) -> Job:
        """Start `work(progress)` as a job of `kind` and return it at once.

        Raises JobConflictError when a job of that kind is queued or running; the check and the
        registration happen under one lock, so of two racing submissions exactly one wins.
        """
        return self.start_exclusive(kind, lambda: work)

    def start_exclusive(self, kind: str, begin: Callable[[], Work]) -> Job:
        """Like `submit_exclusive`, with the work made by `begin()` once no job of `kind` is active:
        `begin` may take what the work needs (a lock) or refuse by raising, and then no job exists.

        Submissions take turns from the check to the registration, so of two racing ones exactly
        one gets to `begin`; reading jobs never waits for them.
        """
        with self._submitting:
            with self._lock:
                for other in self._jobs.values():
                    if other.kind == kind and other.active:
                        raise JobConflictError(other)
            work = begin()
            job = Job(id=uuid.uuid4().hex, kind=kind)
            with self._lock:
                self._jobs[job.id] = job
                self._forget_old()
                self._save()
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
            self._changed()
            saved = time.monotonic()

            def progress(fraction: float, message: str) -> None:
                nonlocal saved
                job.progress = max(0.0, min(1.0, fraction))
                job.message = message
                if time.monotonic() - saved >= SAVE_PROGRESS_EVERY_S:
                    saved = time.monotonic()
                    self._changed()

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
                self._changed()
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
    service: SearchService,
    load_model: Callable[[str], Encoder],
    model: tuple[str, str] | None = None,
    reservation: Reservation | None = None,
) -> Work:
    """The work of a reindex: load `model` ((name the client gave, source to load)) if any, rebuild.

    `reservation`: the right to reindex, taken before the job was accepted (`reserve_reindex`);
    released when the work ends, whatever the outcome. A model that fails to load fails the job
    with "model 'name' could not be loaded"; the exception, which may name server paths, goes to
    the log only.
    """

    def work(progress: Progress) -> int:
        try:
            embedder: Encoder | None = None
            if model is not None:
                name, source = model
                try:
                    embedder = load_model(source)
                except Exception as exc:
                    log.exception("reindex: model %r could not be loaded", name)
                    raise JobError(f"model {name!r} could not be loaded") from exc
            return service.reindex(
                embedder, progress, model_name=None if model is None else model[0], reservation=reservation
            )
        finally:
            if reservation is not None:
                reservation.release()

    return work
