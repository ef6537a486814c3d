"""citesearch: ranked, cited passages from news articles, for questions in any language.

The code lives in the repository's top-level folders `embeddings/` (the model), `index/` (the
domain) and `api/` (HTTP and CLI); this package gathers them under one name
(`citesearch.embeddings`, `citesearch.index`, `citesearch.api`) so an installed citesearch adds
no generic top-level modules beside a user's own.
"""

__version__ = "0.1.0"
