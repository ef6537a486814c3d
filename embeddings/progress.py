"""The one progress callback type of citesearch's long work (model preparation, reindex, jobs)."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[float, str], None]
"""Called with (fraction done in [0, 1], a short message)."""
