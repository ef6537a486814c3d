"""What the app holds while it runs: settings, the model loader, the service once loaded, jobs and metrics."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from citesearch.api.jobs import JobRunner
from citesearch.api.metrics import Metrics
from citesearch.api.settings import Settings
from citesearch.index.answers import AnswerReader
from citesearch.index.service import Encoder, SearchService

EmbedderFactory = Callable[[str | None], Encoder]
"""Loads a model: None for the configured one, else a local directory or the configured hub id
(`Settings.load_embedder`; tests may give any encoder of the `Encoder` protocol)."""
AnswerFactory = Callable[[], AnswerReader | None]
"""Loads the answer-sentence model (`Settings.load_answer_model`; None: off)."""


@dataclass
class AppState:
    """Held on `app.state.citesearch`; passed to routes by dependency."""

    settings: Settings
    metrics: Metrics
    embedder_factory: EmbedderFactory
    answer_factory: AnswerFactory
    jobs: JobRunner = field(default_factory=JobRunner)
    service: SearchService | None = None
    load_error: str | None = None
    """A public reason why loading failed (the exception itself is in the log)."""
    ready: threading.Event = field(default_factory=threading.Event)
