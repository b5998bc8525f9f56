"""How much of a distributed call's list a node gets next, and how much it may hold.

A node's speed is its own work, measured on the node (``node_seconds``), apart from the
round trip to it: a long round trip never makes chunks smaller.  Instead a node holds
a small window of chunks sent ahead, enough work to cover the round trip, so it never
waits for its next chunk.  Before a node's speed is known it gets chunks of 1, 2, 4 ...
items (one at a time under a ``job_timeout``), at most a quarter of its share of the
list, so slow items still spread over the nodes.  Chunks are sized to about
``TARGET_SECONDS`` of work (longer on a long round trip), shrinking as the list runs
out; in the last stretch a node holds no more than its share of what is left, so the
nodes finish together.  Pure bookkeeping: the caller holds the call's lock and says
what happened."""

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
"""The shortest chunk worth a request, near the end of the list."""

GROWTH = 4
"""A node's chunk grows at most this many times from one chunk to the next."""

MAX_CHUNK_BYTES = 1 << 20
"""Data a chunk carries at most (for items whose size is known)."""

UNMEASURED_CHUNKS = 4
"""Chunks a node may hold before its first answer tells its speed (1, 2, 4, 8 items)."""

UNMEASURED_SHARE = 4
"""Before its speed is known, a node holds at most 1/this of its share of the list."""

MAX_WINDOW = 16
"""Chunks a node holds at most, sent ahead of its answers."""


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
    """Chunk sizes and windows for one call of ``total`` items; ``bytes_per_item``
    bounds a chunk's data, and a ``job_timeout`` keeps chunks well inside it (a quarter
    of it at most).

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
        self.limit = job_timeout / 4 if job_timeout else math.inf
        self.max_items = (
            max(int(MAX_CHUNK_BYTES / bytes_per_item), 1) if bytes_per_item else math.inf
        )
        self.rates: dict[Hashable, float] = {}  # items a second of the node's own work
        self._sorted: list[float] = []  # the same rates, in order
        self._sum = 0.0
        self.last: dict[Hashable, int] = {}  # the size of each node's last chunk
        self.rtts: dict[Hashable, float] = {}  # the shortest round trip seen, by node
        self._unmeasured: dict[Hashable, int] = {}  # items handed out before a speed

    def target(self, node: Hashable) -> float:
        """Seconds of work a chunk for ``node`` should hold: a long round trip asks
        for longer chunks, fewer requests."""
        return min(max(TARGET_SECONDS, self.rtts.get(node, 0.0)), self.limit)

    def next_size(self, node: Hashable, remaining: int, live: int) -> int:
        """Items for ``node``'s next chunk, when ``remaining`` items are not handed out yet
        and ``live`` nodes share them."""
        if remaining <= 0:
            return 0
        if self.fixed is not None:
            return self._bounded(node, self.fixed, remaining, self.fixed)
        rate = self.rates.get(node)
        if rate is None:
            last = self.last.get(node)
            # Under a job_timeout an unmeasured chunk keeps to one item: more might
            # outlast it on every node.
            size = FIRST_CHUNK if last is None or self.limit < math.inf else last * 2
            size = min(size, max(self.total // max(live, 1) // UNMEASURED_SHARE, 1))
            size = min(size, math.ceil(remaining / max(live, 1)))
            return self._bounded(node, size, remaining)
        seconds = self._chunk_seconds(node, remaining, live)
        size = min(max(int(seconds * rate), 1), self.last.get(node, FIRST_CHUNK) * GROWTH)
        return self._bounded(node, size, remaining)

    def _chunk_seconds(self, node: Hashable, remaining: int, live: int) -> float:
        """The work a chunk for a measured ``node`` holds: the target, shrinking in
        the last stretch of the list so that every node runs out at once."""
        shortest = max(MIN_SECONDS, self.rtts.get(node, 0.0) / 8)
        return min(self.target(node), max(remaining / self._together(live) / 2, shortest))

    def _together(self, live: int) -> float:
        """Items a second of the ``live`` nodes together (the median for the unmeasured)."""
        median = self._sorted[len(self._sorted) // 2]
        return self._sum + max(live - len(self._sorted), 0) * median

    def _bounded(self, node: Hashable, size: int, remaining: int, most: float | None = None) -> int:
        size = int(min(size, remaining, self.max_items if most is None else most))
        self.last[node] = size
        if node not in self.rates:
            self._unmeasured[node] = self._unmeasured.get(node, 0) + size
        return size

    def wants_more(
        self,
        node: Hashable,
        *,
        held: int,
        waiting: int,
        chunks: int,
        live: int,
        remaining: int,
        everyone_held: int,
    ) -> bool:
        """Whether ``node``, holding ``chunks`` chunks (``held`` items) not answered
        yet, ``waiting`` of those items behind the one it works on, should be sent one
        more now: while the work waiting is less than a round trip and a chunk, so the
        next is there before it runs out.  In the list's last stretch (``remaining``
        items to hand out, ``everyone_held`` held by all the nodes), never more than
        its share of all that is left: the nodes finish together."""
        if chunks == 0:
            return True
        if chunks >= MAX_WINDOW:
            return False
        rate = self.rates.get(node)
        if rate is None:
            if chunks >= UNMEASURED_CHUNKS:
                return False
            share = max(self.total // max(live, 1) // UNMEASURED_SHARE, 1)
            return self._unmeasured.get(node, 0) < share
        ahead = self.rtts.get(node, 0.0) + self._chunk_seconds(node, remaining, live)
        if waiting / rate >= ahead:
            return False
        return held / rate < (remaining + everyone_held) / self._together(live)

    def record(
        self, node: Hashable, items: int, seconds: float, round_trip: float | None = None
    ) -> None:
        """``node`` did a chunk of ``items`` in ``seconds`` of its own work; a chunk
        that waited behind no other tells the ``round_trip`` beside it."""
        if round_trip is not None and round_trip >= 0:
            self.rtts[node] = min(self.rtts.get(node, math.inf), round_trip)
        if items > 0:
            self.forget(node)
            rate = self.rates[node] = items / max(seconds, 1e-6)
            bisect.insort(self._sorted, rate)
            self._sum += rate

    def forget(self, node: Hashable) -> None:
        """``node`` failed (or is measured again): its speed no longer counts."""
        old = self.rates.pop(node, None)
        if old is not None:
            del self._sorted[bisect.bisect_left(self._sorted, old)]
            self._sum -= old
