"""Settings from the environment (prefix CITESEARCH_), each documented in the README's table."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from citesearch.index.cluster import ClusterConfig
from citesearch.index.service import IndexConfig

if TYPE_CHECKING:
    from citesearch.embeddings import Embedder
    from citesearch.embeddings.answer_model import AnswerModel

ENV_PREFIX = "CITESEARCH_"
ANSWER_DIRNAME = "answer-sentence"
"""The answer model's engines under the models directory (embeddings/answer_model.py): not a model a reindex may name."""
_PLACEHOLDERS = {"changeme", "change-me", "secret", "password", "apikey", "api-key", "test", "xxx", "todo"}
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
"""A model a reindex may name: a plain directory name under the models directory (no '/', no '..')."""
_MODEL_NAME = re.compile(MODEL_NAME_PATTERN)


def is_model_name(name: str) -> bool:
    """True for a plain model directory name: no path separator, no '..', nothing hidden."""
    return _MODEL_NAME.fullmatch(name) is not None and ".." not in name


MIN_KEY_CHARS = 16
MIN_KEY_DISTINCT_CHARS = 4
"""A random key of 16 hexadecimal characters has fewer than 4 distinct ones about once in 10^10."""


def is_placeholder_key(key: str) -> bool:
    """True for a key nobody generated: a known placeholder, under 16 characters, fewer than 4
    distinct characters ("aaaaaaaaaaaaaaaa", "abababababababab"), or one short run repeated
    ("changemechangeme", "abc123abc123abc1")."""
    if key.lower() in _PLACEHOLDERS or len(key) < MIN_KEY_CHARS or len(set(key)) < MIN_KEY_DISTINCT_CHARS:
        return True
    return any(
        all(key[i] == key[i % period] for i in range(period, len(key)))
        for period in range(1, len(key) // 2 + 1)
    )


def postgres_url_problem(url: str) -> str | None:
    """Why `url` is no PostgreSQL URL libpq can use, or None. The reason never quotes the URL."""
    from psycopg.conninfo import conninfo_to_dict

    example = "expected postgresql://user:password@host:5432/database"
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:
        return f"cannot be parsed as a URL; {example}"
    if scheme not in ("postgresql", "postgres"):
        return f"the scheme must be postgresql:// or postgres://; {example}"
    try:
        params = conninfo_to_dict(url)
    except Exception:  # libpq's message quotes the URL, password included
        return (
            "cannot be parsed as a PostgreSQL URL (percent-encode any of @ : / % ? # in the user or "
            f"password; query parameters must be libpq's); {example}"
        )
    for port in str(params.get("port") or "5432").split(","):
        if not re.fullmatch(r"[0-9]{1,5}", port) or not 0 < int(port) < 65536:
            return f"the port must be a number from 1 to 65535; {example}"
    return None


class Settings(BaseSettings):
    """Service configuration; tests override it by passing an instance to `create_app`."""

    # Errors never quote a value (a URL or a key may be the secret); `repr` leaves the secrets out too.
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", hide_input_in_errors=True)

    data_dir: Path = Field(Path("data"), description="Directory holding the store and the FAISS index.")
    model: str | None = Field(
        None, description="Embedding model: a local sentence-transformers directory or a hub id."
    )
    models_dir: Path | None = Field(None, description="Where `citesearch model prepare` writes models.")
    api_key: str | None = Field(None, repr=False, description="Bearer key required for writes when set.")
    read_key: str | None = Field(
        None, repr=False, description="Bearer key required for reads (and writes) when set."
    )
    cors_origins: list[str] = Field(default_factory=list, description="Allowed browser origins (JSON list).")
    host: str = Field("127.0.0.1", description="Address `citesearch serve` binds.")
    port: int = Field(8000, ge=1, le=65535, description="Port `citesearch serve` binds.")
    timeout_keep_alive_s: int = Field(
        5, ge=1, le=3600, description="Seconds an idle keep-alive connection stays open."
    )
    header_timeout_s: float = Field(
        10.0, gt=0, le=3600, description="Seconds a client has to send a whole request head."
    )
    body_timeout_s: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="Seconds a client has to send a request body after its head (more at the minimum rate).",
    )
    body_min_bytes_per_s: int = Field(
        1024,
        ge=0,
        description="Each this many body bytes received give the body one more second; 0: no extension.",
    )
    max_connections: int = Field(
        1000, ge=1, description="Most open connections and requests in flight; 503 beyond."
    )
    max_connections_per_client: int = Field(
        64, ge=0, description="Most open connections from one client address; 429 beyond; 0: no cap."
    )
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1024, description="Largest request body; 413 beyond.")
    max_query_chars: int = Field(2000, ge=1, le=2000, description="Longest question accepted.")
    max_batch: int = Field(1000, ge=1, le=1000, description="Most articles per POST /v1/articles.")
    max_article_bytes: int = Field(1_000_000, ge=1, description="Largest article text (UTF-8 bytes).")
    max_article_passages: int = Field(256, ge=1, description="Most passages one article may split into.")
    target_tokens: int = Field(
        200, ge=16, le=512, description="Passage size the splitter aims for, in tokens."
    )
    max_passage_tokens: int = Field(
        512, ge=16, le=8192, description="Hard passage limit (capped by the model)."
    )
    overlap_sentences: int = Field(0, ge=0, le=5, description="Sentences repeated between passages.")
    passage_vectors: Literal["model", "sentences"] = Field(
        "model",
        description=(
            "A passage's vector: 'model' embeds its text as well as its sentences; 'sentences' pools its"
            " sentence vectors (ingest ~1.8x faster; cross-lingual MRR@10 about 2 points lower)."
        ),
    )
    index_kind: Literal["auto", "flat", "hnsw"] = Field("auto", description="FAISS index kind.")
    approx_threshold: int = Field(80_000, ge=1, description="Passages above which `auto` switches to HNSW.")
    fairness: bool = Field(True, description="Remove per-language means from dense scores.")
    checkpoint_every_s: float = Field(
        10.0, gt=0, description="Seconds between FAISS checkpoints after writes."
    )
    log_level: str = Field("info", description="Logging level.")
    embed_batch_size: int = Field(32, ge=1, le=1024, description="Passages per model call.")
    embed_engine: Literal["auto", "torch", "openvino"] = Field(
        "auto", description="Inference engine (auto: the fastest faithful one measured by `model prepare`)."
    )
    embed_precision: Literal["auto", "fp32", "bf16", "int8"] = Field(
        "auto", description="Inference precision (auto: the fastest faithful one measured on this CPU)."
    )
    query_shapes: int = Field(
        3,
        ge=0,
        le=7,
        description=(
            "Question widths (16, 24, 32, ... tokens) the OpenVINO engine compiles fixed-width copies for,"
            " per thread count, at start-up: a short question runs ~25% faster; ~25 MB and 0.4 s each."
        ),
    )
    answer_model: Literal["auto", "openvino", "torch", "off"] = Field(
        "auto",
        description=(
            "The answer-sentence model (highlights, answers): auto serves the engine `model prepare`"
            " measured fastest and faithful; off: highlights by cosine alone and no extractive answers."
        ),
    )
    answer_hits: int = Field(
        1,
        ge=0,
        le=50,
        description=(
            "How many of a search page's first hits the answer model reads (each ~6-12 ms on 2 cores);"
            " the others show the sentence nearest by cosine, unmarked. /v1/answer reads its own."
        ),
    )
    database_url: str | None = Field(
        None,
        repr=False,
        description="PostgreSQL URL: the cluster's store of record (unset: embedded SQLite only).",
    )
    cluster_poll_s: float = Field(
        0.5, gt=0, le=60, description="Seconds between checks of the change log when no NOTIFY came."
    )
    cluster_lease_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="Lease of a reindex batch (renewed while embedding); a dead worker's batch is retried after it.",
    )
    cluster_timeout_s: float = Field(
        5.0, gt=0, le=120, description="Seconds a write waits for the database before answering 503."
    )
    cluster_build_batch: int = Field(
        16, ge=1, le=1000, description="Articles per reindex batch a worker claims."
    )
    cluster_build_worker: bool = Field(
        True, description="Whether a replica also embeds batches of a cluster-wide reindex."
    )

    public_url: str | None = Field(
        None,
        max_length=2000,
        description="This server's public base URL, for links to cited spans (default: from the request).",
    )
    llm_url: str | None = Field(
        None, max_length=2000, description="Base URL of an OpenAI-compatible API; unset: extractive answers."
    )
    llm_model: str = Field("default", max_length=200, description="Model name sent to the LLM server.")
    llm_api_key: str | None = Field(
        None, repr=False, description="Bearer key sent to the LLM server, if it needs one."
    )
    llm_timeout_s: float = Field(
        30.0, gt=0, le=600, description="Seconds to wait for the LLM (each read); then answer extractively."
    )

    @field_validator("public_url", "llm_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        problem = postgres_url_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("api_key", "read_key")
    @classmethod
    def _no_placeholder(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if is_placeholder_key(value):
            raise ValueError("use a real secret of at least 16 characters, not a placeholder")
        return value

    @property
    def write_key(self) -> str | None:
        """The key writes need: the API key, else the read key (a read key alone guards everything)."""
        return self.api_key or self.read_key

    def load_embedder(self, model: str | None = None) -> Embedder:
        """The embedding model named by `model` (default: the configured one), loaded with these settings."""
        from citesearch.embeddings import load_embedder

        return load_embedder(
            model if model is not None else self.model,
            models_dir=self.models_dir,
            engine=self.embed_engine,
            precision=self.embed_precision,
            batch_size=self.embed_batch_size,
            query_shapes=self.query_shapes,
        )

    def load_answer_model(self) -> AnswerModel | None:
        """The answer-sentence model (built on the prepared default model), or None when off."""
        if self.answer_model == "off":
            return None
        from citesearch.embeddings import ModelError
        from citesearch.embeddings.answer_prepare import load_answer_model
        from citesearch.embeddings.prepare import default_model_path

        try:
            return load_answer_model(
                default_model_path(self.models_dir), self.models_root(), engine=self.answer_model
            )
        except ModelError as exc:
            if self.answer_model != "auto":
                raise  # an engine asked for by name must be there
            # A models directory prepared by an older release: serve, highlighting by cosine.
            logging.getLogger("citesearch.api").warning(
                "serving without the answer-sentence model (highlights by cosine, no answers marked): %s",
                exc,
            )
            return None

    def models_root(self) -> Path:
        """The models directory: `models_dir`, else the default next to the package."""
        from citesearch.embeddings import default_models_dir

        return self.models_dir if self.models_dir is not None else default_models_dir()

    def reindex_models(self) -> list[str]:
        """The model names a reindex may ask for: the directories under the models directory."""
        try:
            entries = list(self.models_root().iterdir())
        except OSError:
            return []
        return sorted(
            p.name for p in entries if is_model_name(p.name) and p.is_dir() and p.name != ANSWER_DIRNAME
        )

    def reindex_model_source(self, name: str) -> str | None:
        """What to load for a reindex asking for `name`, or None when it may not.

        Either exactly the configured CITESEARCH_MODEL, or a plain name resolved under the models
        directory; never a path taken from the request.
        """
        if self.model is not None and name == self.model:
            return self.model
        if not is_model_name(name) or name == ANSWER_DIRNAME:
            return None
        path = self.models_root() / name
        return str(path) if path.is_dir() else None

    def cluster_config(self) -> ClusterConfig | None:
        """The cluster this process belongs to, or None (embedded SQLite only)."""
        if not self.database_url:
            return None
        return ClusterConfig(
            url=self.database_url,
            poll_s=self.cluster_poll_s,
            lease_s=self.cluster_lease_s,
            timeout_s=self.cluster_timeout_s,
            build_batch=self.cluster_build_batch,
            build_worker=self.cluster_build_worker,
        )

    def load_cluster_model(self, name: str | None) -> Embedder:
        """The model a cluster generation names: a reindex's model name (resolved like a reindex
        request's), or None for the configured model."""
        if name is None:
            return self.load_embedder()
        return self.load_embedder(self.reindex_model_source(name) or name)

    def index_config(self) -> IndexConfig:
        """The domain's view of these settings."""
        return IndexConfig(
            data_dir=self.data_dir,
            target_tokens=self.target_tokens,
            max_passage_tokens=self.max_passage_tokens,
            overlap_sentences=self.overlap_sentences,
            passage_vectors=self.passage_vectors,
            max_article_bytes=self.max_article_bytes,
            max_article_passages=self.max_article_passages,
            max_query_chars=self.max_query_chars,
            index_kind=self.index_kind,
            approx_threshold=self.approx_threshold,
            checkpoint_every_s=self.checkpoint_every_s,
            fairness=self.fairness,
            answer_hits=self.answer_hits,
        )
