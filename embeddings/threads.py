"""How many threads a query-sized forward pass gets, decided by measuring it in the running process.

On an idle 2-core machine a question embeds in ~5 ms on two threads against ~7 ms on one
(OpenVINO bf16, AMD EPYC without AMX); when another process holds the second core, two threads
wait for it and one thread wins. Which case holds changes with the load, and CPU flags do not
tell it, so the Embedder keeps the recent cost per padded token of each option and runs the
cheaper one, trying the other for BURST passes now and then: after EXPLORE_FIRST passes at first,
the wait doubling up to EXPLORE_MAX while the tries keep losing (so a losing option costs at most
BURST slow passes in EXPLORE_MAX), back to EXPLORE_FIRST as soon as a try wins.
"""

from __future__ import annotations

import statistics
from collections import deque

WINDOW = 5
"""Recent passes per option whose median decides."""
BURST = 3
"""Passes in a row a try of the other option gets (one pass is too noisy to switch on)."""
EXPLORE_FIRST = 16
EXPLORE_MAX = 512


class ThreadChooser:
    """Picks among thread counts by the median measured cost of recent passes (not thread-safe:
    the Embedder calls it under its inference lock)."""

    def __init__(self, options: tuple[int, ...]) -> None:
        """`options`: the thread counts to choose among, the preferred first (ties go to it)."""
        if not options:
            raise ValueError("at least one thread count is needed")
        self.options = tuple(dict.fromkeys(options))
        self._costs: dict[int, deque[float]] = {t: deque(maxlen=WINDOW) for t in self.options}
        self._current = self.options[0]
        self._interval = EXPLORE_FIRST
        self._since = 0
        self._trying: int | None = None
        self._left = 0
        self.switches = 0

    @property
    def current(self) -> int:
        """The option that is winning now."""
        return self._current

    def pick(self) -> int:
        """The thread count for the next pass."""
        if self._trying is not None:
            return self._trying
        self._since += 1
        others = [t for t in self.options if t != self._current]
        if others and self._since >= self._interval:
            self._since = 0
            self._trying = min(others, key=lambda t: len(self._costs[t]))
            self._left = BURST
            return self._trying
        return self._current

    def record(self, threads: int, seconds: float, tokens: int) -> None:
        """Record what a pass on `threads` threads cost for `tokens` padded tokens."""
        if threads not in self._costs or tokens <= 0:
            return
        self._costs[threads].append(seconds / tokens)
        if threads != self._trying:
            return
        self._left -= 1
        if self._left > 0:
            return
        self._trying = None
        tried = statistics.median(list(self._costs[threads])[-BURST:])
        mine = list(self._costs[self._current])[-BURST:]
        if not mine or tried < statistics.median(mine):
            self._current = threads
            self._interval = EXPLORE_FIRST
            self.switches += 1
        else:
            self._interval = min(self._interval * 2, EXPLORE_MAX)


__all__ = ["ThreadChooser"]
