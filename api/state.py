"""What the app holds while it runs: settings, the service once loaded, jobs and metrics."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from citesearch.api.metrics import Metrics
from citesearch.api.settings import Settings
from citesearch.index.jobs import JobRunner
from citesearch.index.service import SearchService


@dataclass
class AppState:
    """Held on `app.state.citesearch`; passed to routes by dependency."""

    settings: Settings
    metrics: Metrics
    jobs: JobRunner = field(default_factory=JobRunner)
    service: SearchService | None = None
    load_error: str | None = None
    ready: threading.Event = field(default_factory=threading.Event)
