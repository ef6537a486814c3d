"""Multilingual sentence embeddings for citesearch: one offline default model, one Embedder class.

Importing this package is cheap; torch and sentence-transformers load with the first model.
"""

from citesearch.embeddings.embedder import Embedder, load_embedder
from citesearch.embeddings.errors import ModelError
from citesearch.embeddings.prepare import default_models_dir, prepare_model

__all__ = ["Embedder", "ModelError", "default_models_dir", "load_embedder", "prepare_model"]
