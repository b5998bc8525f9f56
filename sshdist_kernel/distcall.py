"""A distributed call with a life: a ``concurrent.futures.Future`` whose work is handed
out in chunks from one shared queue to per-node workers.

A node holds a small window of chunks sent ahead of their answers (see ``chunks``), so
it never waits a round trip for its next one, and asks for more as answers come, so
fast nodes do more.  When the
queue is empty, a chunk that has run much longer than its peers is copied to an idle
node and the first answer wins (a stopped or unreachable node is worked around so).
A ``NodeError`` puts the node's chunk back in the queue for the others; a
``NodeReplError`` (the code failed) ends the call.  Cancelling the call, its timeout or
an exception from ``on_event`` interrupts every evaluation still running; the nodes
keep their definitions.  Results keep the order of the input, always.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import threading
import time
from collections import deque
from concurrent.futures import CancelledError, Future, InvalidStateError
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

from .chunks import ChunkSizer
from .deadlines import call_at
from .distresult import DistEvent, EventCallback, JobMove, NodeFailure, NodeOutput
from .errors import AllNodesFailedError, EvalCancelled, NodeError, NodeReplError, NodeTimeoutError
from .job import Job, check_job_language, job_request, job_values
from .node import Node
from .nodeworkers import run_on, waiting_work
from .pipeline import Pipeline
from .rrepl import DEFAULT_EVAL_TIMEOUT

log = logging.getLogger("sshdist_kernel.dist")

STRAGGLER_FACTOR = 3.0
"""A chunk running this many times the median chunk's time is copied to an idle node."""

FAN_OUT = 2
"""Drivers each driver starts when it finds work (and the caller at the start)."""

STRAGGLER_AFTER = 1.0
"""Seconds a chunk runs at least before it counts as straggling."""

MAX_ATTEMPTS = 3
"""Attempts of one chunk that may run at once: the first and two copies."""

STRAGGLER_ALONE = 5.0
"""Seconds a chunk runs before it is copied when no chunk has finished to compare it with."""

WATCH_SLICE = 0.2

HANDOFF_WAIT = 0.5
"""Seconds a node's driver waits, between chunks, for another caller waiting for the
node's REPL to take it (a lock is not fair: the driver would take it back at once)."""
"""Seconds between a watcher's looks at whether another call waits for its node."""


_CALL_NAMES = {"map": "dist_map", "eval": "distribute"}


@dataclass(eq=False)
class _Chunk:
    index: int
    start: int
    items: list[Any]
    values: list[Any] | None = None
    attempts: list[_Attempt] = field(default_factory=list)
    failed_on: Node | None = None  # set while it waits to move from a failed node


@dataclass(eq=False)
class _Attempt:
    chunk: _Chunk
    job: Job
    started: float  # when it was sent, then when the node began it (it reached the head)
    copy_of: Node | None = None  # a straggler copy: the slow node it races
    sent: float = 0.0
    alone: bool = False  # sent when its node held nothing else: its answer times a round trip
    cancel: threading.Event = field(default_factory=threading.Event)
    printed: list[NodeOutput] = field(default_factory=list)  # kept if this attempt counts


class DistCall(Future):
    """One ``dist_map`` or ``distribute`` on its way.  ``result(timeout)`` waits for the
    ``DistList`` / ``DistTuple``; ``cancel()`` stops the nodes' work; ``progress``
    counts items done of ``total``; ``failures``, ``moves`` and ``outputs`` grow as it
    runs."""

    def __init__(
        self,
        kind: str,
        nodes: list[Node],
        items: list[Any],
        proc: str | None,
        *,
        timeout: float | None,
        job_timeout: float | None,
        on_event: EventCallback | None,
        sizer: ChunkSizer,
        reserved: list[tuple[Node, list[Any]]] | None = None,
        make_result: Any = list,
    ) -> None:
        super().__init__()
        self.kind = kind
        self.proc = proc
        self.total = len(items)
        self.nodes = list({id(n): n for n in nodes}.values())  # listed twice: one worker
        self.timeout = timeout
        self._items = items
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._job_timeout = job_timeout if job_timeout is not None else timeout
        self._on_event = on_event
        self._sizer = sizer
        self._make_result = make_result
        self._lock = threading.Lock()
        self._carved = 0  # items already cut into chunks
        self._chunks: list[_Chunk] = []
        self._waiting: deque[_Chunk] = deque()  # chunks to do again (their node failed)
        # Attempts sent and not answered, by id(attempt), in the order of their `started`.
        self._running: dict[int, _Attempt] = {}
        self._held: dict[int, deque[_Attempt]] = {}  # the same, by id(node), oldest first
        self._held_items = 0  # items of all those attempts
        self._given: set[int] = set()  # nodes handed a chunk so far, by id
        self._idle_nodes: list[Node] = []  # live nodes whose driver ended for want of work
        self._to_start: list[Node] = []  # idle nodes given work, to start after the lock
        self._watcher: int | None = None  # the idle node that waits for a straggler
        self._watch = threading.Event()  # wakes the watcher
        self._alive = {id(n) for n in self.nodes}
        self._durations: list[float] = []  # of finished chunks, sorted
        self._done_items = 0
        self._finished = False
        self._drivers = 0  # drivers started and not ended
        self._unstarted: deque[Node] = deque()  # nodes no driver has run on yet (_begin)
        self._stopped = threading.Event()  # every driver has let go of its node
        self.failures: list[NodeFailure] = []
        self.moves: list[JobMove] = []
        self.outputs: dict[str, list[NodeOutput]] = {}
        self._cancelled_text = ""  # what a cancelled call's CancelledError says
        self._reserved: dict[int, deque[_Chunk]] = {}  # the chapter's one job per node
        if reserved is not None:
            start = 0
            for node, part in reserved:
                chunk = _Chunk(len(self._chunks), start, part)
                self._chunks.append(chunk)
                self._reserved.setdefault(id(node), deque()).append(chunk)
                start += len(part)
            self._carved = self.total

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
    def name(self) -> str:
        """``dist_map`` or ``distribute``: what the call is, as messages name it."""
        return _CALL_NAMES.get(self.kind, self.kind)

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

    def done_text(self) -> str:
        """``6 of 30 items done on 3 nodes``."""
        count = len(self.nodes)
        return (
            f"{self._done_items} of {self.total} {self.unit} done on {count} "
            f"node{'' if count == 1 else 's'}"
        )

    def partial(self) -> dict[int, Any]:
        """The values of the items (or expressions) done so far, by their index: what a
        cancelled or failed call had made, or a running one has made until now."""
        with self._lock:
            done = [(c.start, c.values) for c in self._chunks if c.values is not None]
        return {start + i: v for start, values in sorted(done) for i, v in enumerate(values)}

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

    def _time_out(self) -> None:
        with self._lock:
            done = self._done_items
        self._finish(
            NodeTimeoutError(
                f"the call did not finish within {self.timeout:g} s: "
                f"{done} of {self.total} {self.unit} done"
            )
        )

    @property
    def unit(self) -> str:
        """``items`` (dist_map) or ``expressions`` (distribute)."""
        return "items" if self.kind == "map" else "expressions"

    def _finish(self, error: BaseException | None) -> None:
        """End the call once: the result, or ``error``; stop whatever still runs."""
        with self._lock:
            if self._finished:
                return
            self._finished = True
            failures, moves = tuple(self.failures), tuple(self.moves)
            outputs = {name: list(outs) for name, outs in self.outputs.items()}
        self._stop()
        if error is not None:
            error.failures = failures  # type: ignore[attr-defined]
            error.moves = moves  # type: ignore[attr-defined]
            error.outputs = outputs  # type: ignore[attr-defined]
            error.partial = self.partial()  # type: ignore[attr-defined]
            outcome: Any = error
        else:
            outcome = self._make_result(chain.from_iterable(c.values or () for c in self._chunks))
            outcome.failures, outcome.moves, outcome.outputs = failures, moves, outputs
        try:
            if error is None:
                self.set_result(outcome)
            else:
                self.set_exception(error)
        except InvalidStateError:  # cancelled meanwhile
            pass

    def _stop(self) -> None:
        with self._lock:
            self._finished = True
            running = list(self._running.values())
            stopped = self._drivers == 0
        for attempt in running:
            attempt.cancel.set()
        self._watch.set()
        if stopped:
            self._stopped.set()

    # -- a driver: the call's work on one node, on that node's worker thread -----------
    #
    # Drivers start as a tree: the caller starts two, and each that finds work starts
    # two more, so no thread waits on one starter and no node is woken for nothing.
    # A driver with nothing to do ends, and its node waits in _idle_nodes, except one:
    # the watcher, which waits for a running chunk to straggle.  A chunk put back in
    # the queue, or a watcher gone to copy a chunk, starts a driver for an idle node.
    # So each node costs at most one thread hand-off a call.

    def _drive(self, node: Node) -> None:
        pipe: Pipeline | None = None
        try:
            while True:
                pipe = self._send_more(node, pipe)
                if pipe is None or not pipe.outstanding:
                    break
                pipe = self._receive(node, pipe)
        finally:
            if pipe is not None:
                pipe.close()
            with self._lock:
                self._drivers -= 1
                stopped = self._drivers == 0 and self._finished
            if stopped:
                self._stopped.set()

    def _send_more(self, node: Node, pipe: Pipeline | None) -> Pipeline | None:
        """Send ``node`` work while its window is open; the pipeline it is on after."""
        while True:
            if pipe is None or not pipe.outstanding:
                if pipe is not None:  # free between chunks: _take may wait (a watcher)
                    waiting, rrepl = pipe.others_waiting, pipe.rrepl
                    pipe.close()
                    pipe = None
                    if waiting:  # it gets the REPL first, not this thread again
                        rrepl.let_waiter_in(HANDOFF_WAIT)
                attempt = self._take(node)
            elif pipe.others_waiting:  # another caller: it gets in after the running chunk
                self._cancel_waiting(node, pipe)
                return pipe
            elif not pipe.rrepl.pipelines:
                return pipe
            else:
                attempt = self._take_more(node)
            if attempt is None:
                return pipe
            pipe = self._send(node, pipe, attempt)

    def _cancel_waiting(self, node: Node, pipe: Pipeline) -> None:
        """Ask ``node`` to drop the chunks waiting behind its running one (each comes
        back as cancelled and goes back in the queue); a failure is the node's."""
        try:
            pipe.cancel_waiting(self._send_deadline())
        except NodeError as exc:
            with self._lock:
                head = self._held[id(node)][0]
            pipe.close()
            self._failed(node, head, exc)

    def _grow(self, count: int) -> None:
        """Under the lock: start drivers for up to ``count`` unstarted nodes, the tree's
        next branches.  Never idle ones: they found nothing to do, while an unstarted
        node may be the only one that can do its jobs (chunksize="per-node")."""
        while count > 0 and self._unstarted and not self._finished:
            self._to_start.append(self._unstarted.popleft())
            self._drivers += 1
            count -= 1

    def _wake_idle(self, count: int) -> None:
        """Under the lock: start drivers for up to ``count`` idle or unstarted nodes
        (after the lock, through ``_start_drivers``): for work any node can take."""
        while count > 0 and not self._finished:
            if self._idle_nodes:
                self._to_start.append(self._idle_nodes.pop(self._free_idle()))
            elif self._unstarted:
                self._to_start.append(self._unstarted.popleft())
            else:
                return
            self._drivers += 1
            count -= 1

    def _free_idle(self) -> int:
        """Under the lock: where the last idle node no other call keeps busy is in
        ``_idle_nodes``, else the last one's; looked for from the end, where it
        usually is, rather than among all the idle nodes."""
        idle = self._idle_nodes
        for i in range(len(idle) - 1, -1, -1):
            if not waiting_work(idle[i]):
                return i
        return -1

    def _start_drivers(self) -> None:
        with self._lock:
            nodes, self._to_start = self._to_start, []
        for node in nodes:
            run_on(node, lambda node=node: self._drive(node))

    def _take(self, node: Node) -> _Attempt | None:
        """The next piece of work for ``node``; None when it has none (the watcher
        waits for a straggler first)."""
        key = id(node)
        while True:
            events: list[DistEvent] = []
            with self._lock:
                if self._finished or key not in self._alive:
                    return None
                attempt, wake_at = self._choose(node, events)
                if attempt is not None:
                    self._hold(node, attempt)
                    self._grow(FAN_OUT)  # work begins: the drivers start as a tree
                    if self._watcher == key:
                        self._watcher = None
                        self._wake_idle(1)  # someone else watches now
                elif self._watcher in (None, key) and self._running:
                    self._watcher = key
                    self._watch.clear()
                else:
                    self._idle_nodes.append(node)
                    return None
            if self._to_start:
                self._start_drivers()
            for event in events:
                self._log(event)
                self._emit(event)
            if attempt is not None:
                return attempt
            left = WATCH_SLICE if wake_at is None else wake_at - time.monotonic()
            self._watch.wait(min(max(left, 0.001), WATCH_SLICE))
            if waiting_work(node) > 1:  # another call waits for this node: let it have it
                with self._lock:
                    if self._watcher == key and not self._finished:
                        self._watcher = None
                        self._idle_nodes.append(node)
                        self._wake_idle(1)
                        resign = True
                    else:
                        resign = False
                if resign:
                    self._start_drivers()
                    return None

    def _take_more(self, node: Node) -> _Attempt | None:
        """One more chunk for ``node``, which holds some already, if its window is open
        (no straggler copy: those go to nodes with nothing to do)."""
        key = id(node)
        events: list[DistEvent] = []
        with self._lock:
            held = self._held.get(key, ())
            items = sum(a.job.size for a in held)
            if (
                self._finished
                or key not in self._alive
                # Sent blind (its speed unknown) only once every node has its first chunk:
                # slow first items then spread over the nodes, not behind one another.
                or (key not in self._sizer.rates and not self._all_given())
                or not self._sizer.wants_more(
                    key,
                    held=items,
                    waiting=items - (held[0].job.size if held else 0),
                    chunks=len(held),
                    live=len(self._alive),
                    remaining=self.total - self._carved,
                    everyone_held=self._held_items,
                )
            ):
                return None
            attempt = self._choose_fresh(node, time.monotonic(), events)
            if attempt is not None:
                self._hold(node, attempt)
        for event in events:
            self._log(event)
            self._emit(event)
        return attempt

    def _all_given(self) -> bool:
        """Under the lock: every live node has had a chunk (counted before compared)."""
        return len(self._given) >= len(self._alive) and self._alive <= self._given

    def _hold(self, node: Node, attempt: _Attempt) -> None:
        """Under the lock: ``attempt`` is on its way to ``node``, behind what it holds."""
        held = self._held.setdefault(id(node), deque())
        attempt.alone = not held
        attempt.sent = attempt.started
        held.append(attempt)
        self._held_items += attempt.job.size
        self._given.add(id(node))
        self._running[id(attempt)] = attempt

    def _log(self, event: DistEvent) -> None:
        if event.kind == "moved":
            log.warning(
                "job %d moved from %s to %s", event.job.index, event.node.name, event.detail.name
            )
        elif event.kind == "copied":
            log.warning(
                "job %d runs long on %s, much longer than its peers: a copy runs on %s",
                event.job.index,
                event.detail.name,
                event.node.name,
            )

    def _choose(self, node: Node, events: list[DistEvent]) -> tuple[_Attempt | None, float | None]:
        """Under the lock: the work ``node`` should do now, or when to look again."""
        now = time.monotonic()
        attempt = self._choose_fresh(node, now, events)
        if attempt is not None:
            return attempt, None
        return self._straggler(node, now, events)

    def _choose_fresh(self, node: Node, now: float, events: list[DistEvent]) -> _Attempt | None:
        """Under the lock: ``node``'s own job, a chunk to do again, or a new chunk."""
        reserved = self._reserved.get(id(node))
        if reserved:
            return self._attempt(reserved.popleft(), node, now)
        if self._waiting:
            chunk = self._waiting.popleft()
            attempt = self._attempt(chunk, node, now)
            if chunk.failed_on is not None:  # else it comes back from a node that let go
                move = JobMove(attempt.job, chunk.failed_on, node)
                chunk.failed_on = None
                self.moves.append(move)
                events.append(DistEvent("moved", attempt.job, move.from_node, node))
            return attempt
        if self._carved < self.total:
            size = self._sizer.next_size(id(node), self.total - self._carved, len(self._alive))
            start = self._carved
            chunk = _Chunk(len(self._chunks), start, self._items[start : start + size])
            self._carved += size
            self._chunks.append(chunk)
            return self._attempt(chunk, node, now)
        return None

    def _straggler(
        self, node: Node, now: float, events: list[DistEvent]
    ) -> tuple[_Attempt | None, float | None]:
        """A copy of the chunk whose latest attempt has run longest, if it straggles; else
        when it would start to (None: no chunk may have another copy)."""
        if self._durations:
            median = self._durations[len(self._durations) // 2]
            after = max(STRAGGLER_FACTOR * median, STRAGGLER_AFTER)
        else:
            after = STRAGGLER_ALONE
        # A chunk is looked at by its latest attempt: a copy that stalls too (a second
        # stopped node) gets a copy of its own, up to MAX_ATTEMPTS at once.  _running
        # holds the attempts in the order they started, and a chunk's latest attempt
        # started no earlier than any of its others: once an attempt started after the
        # oldest found, none further on can be older.  So each node that runs out of
        # work looks at a few attempts, not at every running one (hundreds of nodes).
        oldest: _Attempt | None = None
        for a in self._running.values():
            if oldest is not None and a.started >= oldest.started:
                break
            chunk = a.chunk
            if chunk.values is None and len(chunk.attempts) < MAX_ATTEMPTS:
                if oldest is None or chunk.attempts[-1].started < oldest.started:
                    oldest = chunk.attempts[-1]
        if oldest is None:
            return None, None
        if now - oldest.started < after:
            return None, oldest.started + after
        slow = oldest.chunk.attempts[0].job.node
        attempt = self._attempt(oldest.chunk, node, now, copy_of=slow)
        events.append(DistEvent("copied", attempt.job, node, slow))
        return attempt, None

    def _attempt(
        self, chunk: _Chunk, node: Node, now: float, copy_of: Node | None = None
    ) -> _Attempt:
        if self.kind == "map":
            job = Job("map", node, chunk.items, self.proc, chunk.index)
        else:
            job = Job("eval", node, None, chunk.items, chunk.index)
        attempt = _Attempt(chunk, job, now, copy_of)
        chunk.attempts.append(attempt)
        return attempt

    def _send_deadline(self) -> float:
        """When sending a chunk (and waiting for the REPL to be free) must be done by."""
        limits = [t for t in (self._job_timeout, DEFAULT_EVAL_TIMEOUT) if t is not None]
        deadline = time.monotonic() + min(limits)
        return deadline if self._deadline is None else min(deadline, self._deadline)

    def _head_deadline(self, head: _Attempt) -> float:
        """When the chunk a node works on must be answered: its job timeout from when
        the node began it, within the call's."""
        limits = [t for t in (self._job_timeout, DEFAULT_EVAL_TIMEOUT) if t is not None]
        deadline = head.started + min(limits)
        return deadline if self._deadline is None else min(deadline, self._deadline)

    def _send(self, node: Node, pipe: Pipeline | None, attempt: _Attempt) -> Pipeline | None:
        """Send ``attempt`` to ``node``: on ``pipe``, or on a pipeline opened for it."""
        job = attempt.job
        if pipe is None or not pipe.outstanding:
            self._emit(DistEvent("start", job, node))  # else once the node begins it
        try:
            source, attachment = job_request(job)
            if pipe is None:
                return node.open_pipeline(
                    source,
                    attachment,
                    deadline=self._send_deadline(),
                    cancel=attempt.cancel,
                    on_start=lambda: check_job_language(node),
                )
            pipe.send(source, attachment, self._send_deadline())
            return pipe
        except BaseException as exc:  # noqa: BLE001 - the caller's, through the future
            if pipe is not None:
                pipe.close()
            self._failed(node, attempt, exc)
            return None

    def _receive(self, node: Node, pipe: Pipeline) -> Pipeline | None:
        """Read the answer to the chunk ``node`` works on; the pipeline, while usable."""
        with self._lock:
            attempt = self._held[id(node)][0]
        job = attempt.job

        def on_output(stream: str, text: str) -> None:
            out = NodeOutput(job.index, stream, text)
            attempt.printed.append(out)
            self._emit(DistEvent("output", job, node, out))

        try:
            result = pipe.answer(self._head_deadline(attempt), on_output, attempt.cancel)
            values = job_values(job, result)
        except NodeReplError as exc:
            if exc.key == "interrupted" and pipe.waiting_cancelled:  # see _cancel_waiting
                self._give_back(node, attempt)
                return pipe
            pipe.close()  # what it still holds is interrupted
            self._failed(node, attempt, exc)
            return None
        except BaseException as exc:  # noqa: BLE001 - the caller's, through the future
            pipe.close()  # what it still holds is interrupted
            self._failed(node, attempt, exc)
            return None
        begins = not pipe.waiting_cancelled  # else the next one comes back unbegun
        if not pipe.outstanding:  # free before the events: on_event may use the node
            pipe.close()
            pipe = None
        self._chunk_done(node, attempt, values, result.node_seconds, begins)
        return pipe

    def _give_back(self, node: Node, attempt: _Attempt) -> None:
        """``node`` dropped ``attempt`` unbegun (``_cancel_waiting``): its chunk goes
        back in the queue, before the later chunks there."""
        with self._lock:
            self._pop_head(node, attempt, time.monotonic())  # the next was dropped too
            chunk = attempt.chunk
            chunk.attempts.remove(attempt)
            if chunk.values is None and not chunk.attempts:  # in line by its place
                chunk.failed_on = None
                at = next((i for i, c in enumerate(self._waiting) if c.index > chunk.index), None)
                self._waiting.insert(len(self._waiting) if at is None else at, chunk)

    def _pop_head(self, node: Node, attempt: _Attempt, now: float) -> _Attempt | None:
        """Under the lock: ``node``'s running ``attempt`` is answered; the next it holds,
        if any, begins now (it moves to the end of ``_running``, kept in start order)."""
        held = self._held[id(node)]
        held.popleft()
        self._held_items -= attempt.job.size
        self._running.pop(id(attempt), None)
        begun = held[0] if held else None
        if begun is not None:
            del self._running[id(begun)]
            begun.started = now
            self._running[id(begun)] = begun
        return begun

    def _failed(self, node: Node, attempt: _Attempt, exc: BaseException) -> None:
        """``attempt`` ended with ``exc`` and ``node`` let go of every chunk it held."""
        if isinstance(exc, EvalCancelled):
            self._let_go(node)
        elif isinstance(exc, (NodeError, NodeReplError)) and attempt.cancel.is_set():
            self._let_go(node)  # it lost a race, or the call ended: no news
        elif isinstance(exc, NodeTimeoutError) and self._past_deadline():
            self._let_go(node)
            self._time_out()
        elif isinstance(exc, NodeError):
            self._node_failed(node, attempt, exc)
        elif isinstance(exc, NodeReplError):
            self._let_go(node)  # what it printed is on the error
            self._finish(self._job_error(node, attempt, exc))
        else:
            self._let_go(node)
            self._finish(exc)

    def _past_deadline(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline - 0.01

    def _keep_printed(self, node: Node, attempt: _Attempt) -> None:
        """Under the lock: what the attempt printed goes on the result (a copy that lost,
        or a node that failed before its answer, printed nothing the result shows)."""
        if attempt.printed:
            self.outputs.setdefault(node.name, []).extend(attempt.printed)

    def _drop_held(self, node: Node, failed: bool) -> int:
        """Under the lock: forget every attempt ``node`` holds; the chunks left with no
        attempt and no answer go back to the queue (``failed``: as moving from it).
        How many went back."""
        held = self._held.pop(id(node), ())
        back = []
        for attempt in held:
            self._running.pop(id(attempt), None)
            self._held_items -= attempt.job.size
            chunk = attempt.chunk
            chunk.attempts.remove(attempt)
            if chunk.values is None and not chunk.attempts:
                chunk.failed_on = node if failed else None
                back.append(chunk)
        self._waiting.extendleft(reversed(back))  # first in line, in their order
        return len(back)

    def _let_go(self, node: Node) -> None:
        with self._lock:
            back = self._drop_held(node, failed=False)
            if back and not self._finished:
                self._wake_idle(back)
        if back:
            self._start_drivers()

    def _chunk_done(
        self,
        node: Node,
        attempt: _Attempt,
        values: list[Any],
        node_seconds: float | None,
        begins: bool = True,
    ) -> None:
        now = time.monotonic()
        took = now - attempt.started
        chunk = attempt.chunk
        with self._lock:
            begun = self._pop_head(node, attempt, now)  # the node works on it now
            first = chunk.values is None
            if first:
                chunk.values = values
                self._done_items += len(values)
                bisect.insort(self._durations, took)
                self._keep_printed(node, attempt)
                worked = took if node_seconds is None else node_seconds
                round_trip = now - attempt.sent - worked if attempt.alone else None
                self._sizer.record(id(node), len(values), worked, round_trip)
                losers = [a for a in chunk.attempts if a is not attempt]
                if attempt.copy_of is not None:
                    self.moves.append(JobMove(attempt.job, attempt.copy_of, node, "straggler"))
            chunk.attempts.remove(attempt)
            complete = self._done_items == self.total
            # A watcher that began before any chunk finished waits without a clock.
            wake = first and len(self._durations) == 1
        if first:
            for loser in losers:
                loser.cancel.set()
            if wake:
                self._watch.set()
            self._emit(DistEvent("done", attempt.job, node, took))
        if begun is not None and begins:
            self._emit(DistEvent("start", begun.job, node))
        if first and complete:
            self._finish(None)

    def _node_failed(self, node: Node, attempt: _Attempt, error: NodeError) -> None:
        with self._lock:
            self._alive.discard(id(node))
            self._sizer.forget(id(node))
            self.failures.append(NodeFailure(node, error, attempt.job))
            self._drop_held(node, failed=True)
            for other in self._reserved.pop(id(node), ()):  # its next jobs, too
                other.failed_on = node
                self._waiting.append(other)
            all_failed = not self._alive
            self._wake_idle(len(self._waiting) - (self._watcher is not None))
            failures = tuple(self.failures)
        log.warning("%s failed: %s", node.name, error)
        self._emit(DistEvent("failed", attempt.job, node, error))
        if all_failed:
            self._finish(
                AllNodesFailedError(
                    "every node failed:\n" + "\n".join(f"  {f}" for f in failures),
                    failures=failures,
                )
            )
            return
        self._watch.set()
        self._start_drivers()

    def _job_error(self, node: Node, attempt: _Attempt, error: NodeReplError) -> NodeReplError:
        job, chunk = attempt.job, attempt.chunk
        first, last = chunk.start, chunk.start + job.size - 1
        where = f"item {first}" if first == last else f"items {first} to {last}"
        if job.type == "eval":
            where = where.replace("item", "expression")
        failure = NodeReplError(
            f"job {job.index} ({job.type}, {where}): {error.message}",
            key=error.key,
            node=node.name,
            output=error.output,
            error_output=error.error_output,
            job=job,
        )
        self._emit(DistEvent("failed", job, node, failure))
        return failure

    def _emit(self, event: DistEvent) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(event)
        except BaseException as exc:  # noqa: BLE001 - the caller's: it ends the call
            log.debug("on_event failed on %s", event, exc_info=True)
            self._finish(exc)
