"""Coalescing of concurrent single-query encodes into one forward pass.

A server answers many questions at once. Encoding each on its own runs one small forward pass
after another (the model allows one at a time per process); encoding the questions that arrived
while the previous pass ran as one batch costs little more than one of them. No caller ever waits
for a batch to fill: the first caller encodes at once, and whoever arrives meanwhile is served by
the next pass, so a lone query pays nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]


@dataclass
class _Pending:
    text: str
    vector: Vectors | None = None
    error: BaseException | None = None
    done: bool = field(default=False)


class QueryBatcher:
    """`encode(text)` for many threads; concurrent calls share forward passes of up to `max_batch`."""

    def __init__(self, encode_many: Callable[[list[str]], Vectors], max_batch: int = 32) -> None:
        self._encode_many = encode_many
        self.max_batch = max(1, max_batch)
        self._cond = threading.Condition()
        self._pending: list[_Pending] = []
        self._busy = False
        self.passes = 0  # forward passes run (for tests and metrics)
        self.encoded = 0  # queries encoded

    def encode(self, text: str) -> Vectors:
        """The embedding of one query, as `encode_many([text])[0]` would give it."""
        me = _Pending(text)
        with self._cond:
            self._pending.append(me)
            self._cond.notify_all()  # wakes `wait_queued` observers; waiting callers re-check and wait on
            while self._busy and not me.done:
                self._cond.wait()
            if me.done:
                return self._result(me)
            # Nobody is encoding and ours is still waiting: lead a pass for everyone queued.
            self._busy = True
            others = [p for p in self._pending if p is not me][: self.max_batch - 1]
            batch = [me, *others]
            taken = {id(p) for p in batch}
            self._pending = [p for p in self._pending if id(p) not in taken]
        try:
            vectors = self._encode_many([p.text for p in batch])
            for p, v in zip(batch, vectors, strict=True):
                p.vector = v
        except BaseException as exc:  # every caller of this pass gets the error
            for p in batch:
                p.error = exc
        with self._cond:
            for p in batch:
                p.done = True
            self.passes += 1
            self.encoded += len(batch)
            self._busy = False
            self._cond.notify_all()
        return self._result(me)

    def wait_queued(self, n: int, timeout: float) -> bool:
        """Block until at least `n` queries wait for a pass (False on timeout): for tests and probes."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self._pending) >= n, timeout)

    @staticmethod
    def _result(p: _Pending) -> Vectors:
        if p.error is not None:
            raise p.error
        assert p.vector is not None
        return p.vector
