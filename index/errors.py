"""Domain exceptions of citesearch; the API maps them to HTTP statuses in one place.

Exception tree:

    CitesearchError                 base of every domain error
    ├── InvalidArticleError         an article failed validation (.details: field and message)
    ├── InvalidQueryError           a question that cannot be answered as asked (blank, too long)
    ├── SourceError                 a source file could not be read or parsed
    ├── NotFoundError               an article, job or other object does not exist
    ├── ConflictError               the operation clashes with the current state (e.g. a running job)
    │   └── DataDirLockedError      another process holds the data directory
    ├── ModelMismatchError          the index was built with another embedding model
    └── StoreUnavailableError       the cluster's database cannot be reached (writes refused)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "CitesearchError",
    "ConflictError",
    "DataDirLockedError",
    "InvalidArticleError",
    "InvalidQueryError",
    "ModelMismatchError",
    "NotFoundError",
    "SourceError",
    "StoreUnavailableError",
]


class CitesearchError(Exception):
    """Base class of every error raised by the citesearch domain."""


class InvalidArticleError(CitesearchError):
    """An article was refused; `details` lists each problem as {"field", "message", ...}."""

    def __init__(self, message: str, details: Iterable[Mapping[str, Any]] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.details: list[dict[str, Any]] = [dict(d) for d in details]


class SourceError(CitesearchError):
    """A source file could not be read or parsed (unreadable, bad encoding, malformed JSON)."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.line = line


class NotFoundError(CitesearchError):
    """The requested object (an article, a job) does not exist."""


class ConflictError(CitesearchError):
    """The request conflicts with the current state (e.g. a reindex is already running)."""


class DataDirLockedError(ConflictError):
    """Another citesearch process (a server, an ingest) holds the data directory."""


class ModelMismatchError(CitesearchError):
    """The embedding model does not match the one the index was built with."""


class InvalidQueryError(CitesearchError):
    """A question that cannot be answered as asked (blank, too long, no letter or digit)."""


class StoreUnavailableError(CitesearchError):
    """The cluster's database (CITESEARCH_DATABASE_URL) cannot be reached: searches go on from the
    local index, writes are refused until it is back."""
