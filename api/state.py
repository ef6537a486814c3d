"""What the app holds while it runs: settings, the model loader, the service once loaded, jobs and metrics."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from citesearch.api.jobs import JobRunner
from citesearch.api.metrics import Metrics
from citesearch.api.settings import Settings
from citesearch.index.service import SearchService

if TYPE_CHECKING:
    from citesearch.embeddings import Embedder

EmbedderFactory = Callable[[str | None], "Embedder"]
"""Loads a model: None for the configured one, else a local directory or the configured hub id."""


@dataclass
class AppState:
    """Held on `app.state.citesearch`; passed to routes by dependency."""

    settings: Settings
    metrics: Metrics
    embedder_factory: EmbedderFactory
    jobs: JobRunner = field(default_factory=JobRunner)
    service: SearchService | None = None
    load_error: str | None = None
    """A public reason why loading failed (the exception itself is in the log)."""
    ready: threading.Event = field(default_factory=threading.Event)
