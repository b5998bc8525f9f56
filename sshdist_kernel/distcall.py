"""A distributed call with a life: a ``concurrent.futures.Future`` whose work is handed
out in chunks from one shared queue to per-node workers.

A node holds a small window of chunks sent ahead of their answers (see ``chunks``), so
it never waits a round trip for its next one, and asks for more as answers come, so
fast nodes do more.  When the queue is empty, a chunk that has run much longer than its
peers is copied to an idle node and the first answer wins (a stopped or unreachable node
is worked around so).
A ``NodeError`` puts the node's chunk back in the queue for the others; a
``NodeReplError`` (the code failed) ends the call.  Cancelling the call, its timeout or
an exception from ``on_event`` interrupts every evaluation still running; the nodes
keep their definitions.  Results keep the order of the input, always.

``DistCall`` here is the caller's face (``result``, ``cancel``, ``partial``,
``progress``, ``await``); the call's books are ``callbook``'s, its drivers on the nodes
``calldrivers``'.
"""

from __future__ import annotations

import asyncio
from collections import deque
from concurrent.futures import CancelledError
from typing import Any

from .calldrivers import CallDrivers
from .callstarts import FAN_OUT
from .deadlines import call_at
from .nodeworkers import waiting_work


class DistCall(CallDrivers):
    """One ``dist_map`` or ``distribute`` on its way.  ``result(timeout)`` waits for the
    ``DistList`` / ``DistTuple``; ``cancel()`` stops the nodes' work; ``progress``
    counts items done of ``total``; ``failures``, ``moves`` and ``outputs`` grow as it
    runs."""

    # -- the caller's side -----------------------------------------------------------

    def start(self) -> DistCall:
        """Hand the work out; the call runs on the nodes' worker threads."""
        self._begin()
        return self

    def _begin(self) -> None:
        if self.total == 0:
            self._stopped.set()
            self._finish(None)
            return
        if self._deadline is not None:
            due = call_at(self._deadline, self._time_out)
            self.add_done_callback(lambda _: due.cancel())
        # Nodes with a job of their own (chunksize="per-node") start first, then those
        # no other call keeps busy.
        self._unstarted = deque(
            sorted(self.nodes, key=lambda n: (id(n) not in self._reserved, waiting_work(n) > 0))
        )
        with self._lock:
            self._grow(FAN_OUT)
        self._start_drivers()

    @property
    def progress(self) -> int:
        """Items (or expressions) done so far."""
        return self._done_items

    def running(self) -> bool:
        return not self.done()

    def cancel(self) -> bool:
        """Stop the call: every evaluation still running on a node is interrupted
        (the nodes keep their definitions).  False if the call had already ended."""
        with self._lock:
            if self._finished:
                return False
            text = f"{self.name} cancelled: {self.done_text()}"
        self._cancelled_text = text  # before the waiters wake
        if not super().cancel():
            return False
        self._stop()
        return True

    def result(self, timeout: float | None = None) -> Any:
        """The results; ``CancelledError`` saying how far a cancelled call had got (its
        ``partial`` has the values done by then)."""
        try:
            return super().result(timeout)
        except CancelledError:
            raise self._cancelled_error() from None

    def exception(self, timeout: float | None = None) -> BaseException | None:
        try:
            return super().exception(timeout)
        except CancelledError:
            raise self._cancelled_error() from None

    def _cancelled_error(self) -> CancelledError:
        error = CancelledError(self._cancelled_text)
        error.partial = self.partial()  # type: ignore[attr-defined]
        return error

    def __await__(self) -> Any:
        """``await call`` in a running event loop (IPython's autoawait, Jupyter); a
        cancelled call's ``CancelledError`` says how far it had got."""
        return self._awaited().__await__()

    async def _awaited(self) -> Any:
        try:
            return await asyncio.wrap_future(self)
        except asyncio.CancelledError:
            if self.cancelled():
                error = asyncio.CancelledError(self._cancelled_text)
                error.partial = self.partial()  # type: ignore[attr-defined]
                raise error from None
            raise

    def __repr__(self) -> str:
        if self.cancelled():
            state = "cancelled"
        elif not self.done():
            state = "running"
        else:
            state = "failed" if self.exception() is not None else "done"
        count, name = len(self.nodes), self.name
        return (
            f"<DistCall {name}: {self.progress}/{self.total} {self.unit} on {count} "
            f"node{'' if count == 1 else 's'}, {state}>"
        )

    def stop(self, error: BaseException, wait: float = 1.0) -> None:
        """End the call with ``error`` unless it has ended, and wait up to ``wait``
        seconds for the nodes to let go (what an interrupted caller does)."""
        self._finish(error)
        self._stopped.wait(wait)

    def wait_stopped(self, timeout: float | None = None) -> bool:
        """Wait until no node works for this call any more."""
        return self._stopped.wait(timeout)
