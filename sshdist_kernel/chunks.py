"""How much of a distributed call's list a node gets next: small chunks at first, then
chunks sized from each node's measured speed to about ``TARGET_SECONDS`` of work,
shrinking as the list runs out so the nodes finish together.  Pure bookkeeping: the
caller holds the call's lock and says what happened."""

from __future__ import annotations

import bisect
import math
from collections.abc import Hashable

FIRST_CHUNK = 1
"""Items in a node's first chunk: one, so slow items show progress (and a speed to size
the next chunk by) after one item's time; chunks then grow at most ``GROWTH`` times."""

TARGET_SECONDS = 0.1
"""About how long a chunk should keep a node busy, once its speed is known."""

MIN_SECONDS = 0.01
"""The shortest chunk worth a round trip, near the end of the list."""

GROWTH = 4
"""A node's chunk grows at most this many times from one chunk to the next."""

MAX_CHUNK_BYTES = 1 << 20
"""Data a chunk carries at most (for items whose size is known)."""


def check_chunksize(chunksize: object) -> int | str | None:
    """``chunksize`` as given, or ``ValueError``: None (adapt), ``"per-node"``, or an int."""
    if chunksize is None or chunksize == "per-node":
        return chunksize  # type: ignore[return-value]
    if isinstance(chunksize, int) and not isinstance(chunksize, bool) and chunksize >= 1:
        return chunksize
    raise ValueError(
        f"chunksize is a number of items (at least 1), 'per-node' or None, not {chunksize!r}"
    )


class ChunkSizer:
    """Chunk sizes for one call of ``total`` items; ``bytes_per_item`` bounds a chunk's data,
    and a ``job_timeout`` keeps chunks well inside it (a quarter of it at most).

    Every step costs O(log nodes): the nodes' rates are kept sorted and summed."""

    def __init__(
        self,
        total: int,
        chunksize: int | None = None,
        bytes_per_item: float | None = None,
        job_timeout: float | None = None,
    ) -> None:
        self.total = total
        self.fixed = chunksize
        self.target = min(TARGET_SECONDS, job_timeout / 4) if job_timeout else TARGET_SECONDS
        self.max_items = (
            max(int(MAX_CHUNK_BYTES / bytes_per_item), 1) if bytes_per_item else math.inf
        )
        self.rates: dict[Hashable, float] = {}  # items a second, by node
        self._sorted: list[float] = []  # the same rates, in order
        self._sum = 0.0
        self.last: dict[Hashable, int] = {}  # the size of each node's last chunk

    def next_size(self, node: Hashable, remaining: int, live: int) -> int:
        """Items for ``node``'s next chunk, when ``remaining`` items are not handed out yet
        and ``live`` nodes share them."""
        if remaining <= 0:
            return 0
        if self.fixed is not None:
            return min(self.fixed, remaining)
        if not self._sorted:
            size = min(FIRST_CHUNK, math.ceil(remaining / max(live, 1)))
            return self._bounded(node, size, remaining)
        median = self._sorted[len(self._sorted) // 2]
        rate = self.rates.get(node, median)
        last = self.last.get(node, FIRST_CHUNK)
        together = self._sum + max(live - len(self._sorted), 0) * median
        seconds = min(self.target, max(remaining / together / 2, MIN_SECONDS))
        size = min(max(int(seconds * rate), 1), last * GROWTH)
        return self._bounded(node, size, remaining)

    def _bounded(self, node: Hashable, size: int, remaining: int) -> int:
        size = int(min(size, remaining, self.max_items))
        self.last[node] = size
        return size

    def record(self, node: Hashable, items: int, seconds: float) -> None:
        """``node`` did a chunk of ``items`` in ``seconds`` (round trip included)."""
        if items > 0 and seconds > 0:
            self.forget(node)
            rate = self.rates[node] = items / seconds
            bisect.insort(self._sorted, rate)
            self._sum += rate

    def forget(self, node: Hashable) -> None:
        """``node`` failed: its speed no longer counts."""
        old = self.rates.pop(node, None)
        if old is not None:
            del self._sorted[bisect.bisect_left(self._sorted, old)]
            self._sum -= old
