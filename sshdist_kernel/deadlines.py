"""Calls' whole-call timeouts on one thread: a call with a ``timeout`` used to start a
``threading.Timer`` (a thread) of its own, so a notebook making thousands of short calls
made thousands of threads.  One watcher thread keeps every pending deadline in a heap;
a deadline that passes runs its callback on a thread of its own (a timeout stops nodes,
which may take a moment, and must not hold up the others' deadlines)."""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable


class Deadline:
    """A callback due at a ``time.monotonic()`` instant; ``cancel()`` drops it."""

    __slots__ = ("when", "callback", "cancelled")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        global _dropped
        with _lock:
            if self.cancelled:
                return
            self.cancelled = True
            _dropped += 1
            if _dropped > 64 and _dropped * 2 > len(_heap):  # many short calls: compact
                _heap[:] = [entry for entry in _heap if not entry[2].cancelled]
                heapq.heapify(_heap)
                _dropped = 0


_lock = threading.Condition()  # guards everything below
_heap: list[tuple[float, int, Deadline]] = []
_order = itertools.count()
_watcher: threading.Thread | None = None
_dropped = 0  # cancelled entries still in the heap


def call_at(when: float, callback: Callable[[], None]) -> Deadline:
    """Run ``callback`` once ``time.monotonic()`` reaches ``when``, unless cancelled."""
    global _watcher
    deadline = Deadline(when, callback)
    with _lock:
        heapq.heappush(_heap, (when, next(_order), deadline))
        if _watcher is None:
            _watcher = threading.Thread(target=_watch, daemon=True, name="sshdist deadlines")
            _watcher.start()
        if _heap[0][2] is deadline:
            _lock.notify()
    return deadline


def pending() -> int:
    """Deadlines neither due nor cancelled yet (for tests and the curious)."""
    with _lock:
        return sum(1 for _, _, d in _heap if not d.cancelled)


def _watch() -> None:
    global _dropped
    while True:
        with _lock:
            while _heap and _heap[0][2].cancelled:
                heapq.heappop(_heap)  # cancelled ones leave as they reach the top
                _dropped = max(_dropped - 1, 0)
            if not _heap:
                _lock.wait()
                continue
            left = _heap[0][0] - time.monotonic()
            if left > 0:
                _lock.wait(left)
                continue
            _, _, due = heapq.heappop(_heap)
        if not due.cancelled:
            threading.Thread(target=due.callback, daemon=True, name="sshdist timeout").start()
