"""A small deterministic encoder for tests of pipeline logic (no model, no threads, instant).

Each text becomes the normalised sum of per-word vectors drawn from a seeded generator, so texts
sharing words are near each other and identical texts get identical vectors. Subclasses override
`vector` for constructed geometry (tests/test_pipeline.py's fairness test).
"""

from __future__ import annotations

import hashlib
import threading

import numpy as np
import numpy.typing as npt
import regex

_WORD = regex.compile(r"[\p{L}\p{N}]+")


class FakeEncoder:
    """Bag-of-words vectors in `dim` dimensions; counts its calls."""

    def __init__(self, dim: int = 32, *, model_id: str = "fake-encoder", max_tokens: int = 512) -> None:
        self.dim = dim
        self.model_id = model_id
        self.max_tokens = max_tokens
        self.calls: list[tuple[str, int]] = []
        self._lock = threading.Lock()

    def _word(self, word: str) -> npt.NDArray[np.float32]:
        seed = int.from_bytes(hashlib.blake2b(word.casefold().encode(), digest_size=8).digest(), "little")
        return np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)

    def vector(self, text: str, language: str | None = None) -> npt.NDArray[np.float32]:
        """The unit vector of one text."""
        v = np.zeros(self.dim, dtype=np.float32)
        for w in _WORD.findall(text):
            v += self._word(w)
        n = float(np.linalg.norm(v))
        return v / n if n > 0 else np.eye(1, self.dim, dtype=np.float32)[0]

    def _encode(self, kind: str, texts: list[str]) -> npt.NDArray[np.float32]:
        with self._lock:
            self.calls.append((kind, len(texts)))
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self.vector(t) for t in texts])

    def encode_queries(self, texts: list[str]) -> npt.NDArray[np.float32]:
        """Query vectors."""
        return self._encode("queries", texts)

    def encode_passages(self, texts: list[str]) -> npt.NDArray[np.float32]:
        """Passage vectors."""
        return self._encode("passages", texts)

    def count_tokens_batch(self, texts: list[str]) -> list[int]:
        """Words plus two, like a tokenizer's specials."""
        return [len(_WORD.findall(t)) + 2 for t in texts]
