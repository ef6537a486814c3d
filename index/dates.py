"""Publication dates as epoch seconds: one conversion for storage, filters and recency."""

from __future__ import annotations

import datetime as dt

DAY_S = 86_400


def epoch_seconds(value: str | dt.date) -> float:
    """Epoch seconds of an ISO date or datetime (a date counts from midnight UTC; naive means UTC).

    Raises ValueError for text that is not ISO 8601.
    """
    if isinstance(value, str):
        value = dt.date.fromisoformat(value) if len(value) == 10 else dt.datetime.fromisoformat(value)
    if not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.timestamp()
