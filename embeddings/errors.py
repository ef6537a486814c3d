"""Exceptions of the embeddings package."""

from __future__ import annotations


class ModelError(RuntimeError):
    """The embedding model is missing, unprepared or cannot be loaded; the message says what to do."""
