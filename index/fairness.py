"""Cross-language fairness: remove each language's mean vector from queries and passages.

Multilingual encoders place every text near its language's centroid, so a question ranks
passages of its own language above better answers in another (Libovický et al., 2020). We score
`(q - μ_Lq)·(p - μ_Lp)` instead of `q·p`, up to the query's norm: the query is centred by its
language's mean, and `q'·μ_Lp` is a per-language constant subtracted through the language slot
of each stored vector (see `index/vectors.py`). Means come from the indexed passages themselves,
shrunk towards the global mean for languages with few passages, and follow every write.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from index.vectors import LANG_SLOTS

PRIOR_WEIGHT = 32.0
"""Pseudo-count pulling a rare language's mean towards the global mean."""


@dataclass(frozen=True)
class LanguageMeans:
    """Per-language mean passage vectors of one generation."""

    means: dict[str, npt.NDArray[np.float32]]
    counts: dict[str, int]
    global_mean: npt.NDArray[np.float32] | None

    @classmethod
    def from_stats(
        cls, stats: dict[str, tuple[int, npt.NDArray[np.float64]]], prior: float = PRIOR_WEIGHT
    ) -> LanguageMeans:
        """Shrunk means from per-language (count, vector sum)."""
        total = sum(n for n, _ in stats.values())
        if total == 0:
            return cls({}, {}, None)
        g = np.sum(np.stack([v for _, v in stats.values()]), axis=0) / total
        means = {lang: ((v + prior * g) / (n + prior)).astype(np.float32) for lang, (n, v) in stats.items()}
        return cls(means, {lang: n for lang, (n, _) in stats.items()}, g.astype(np.float32))

    @property
    def languages(self) -> list[str]:
        """Languages present, most passages first."""
        return sorted(self.counts, key=lambda k: -self.counts[k])

    def centre_query(self, q: npt.NDArray[np.float32], language: str | None) -> npt.NDArray[np.float32]:
        """The query minus its language's mean (the global mean when the language is unknown), renormalised."""
        if self.global_mean is None:
            return q
        mu = self.means.get(language or "", self.global_mean)
        out = q - mu
        norm = float(np.linalg.norm(out))
        return (out / norm).astype(np.float32) if norm > 0 else q

    def offsets(self, q: npt.NDArray[np.float32], slots: dict[str, int]) -> npt.NDArray[np.float32]:
        """Per-slot constants `q·μ_L` to subtract from the scores of language L's passages."""
        out = np.zeros(LANG_SLOTS, dtype=np.float32)
        for lang, slot in slots.items():
            mu = self.means.get(lang)
            if mu is not None:
                out[slot] = float(q @ mu)
        return out
