"""A distributed call's books, under its lock: the chunks cut from the list, the attempts
at them that nodes hold (in the order they began), what is done, failed and moved, what
a node may be given next (its own job, a chunk given back, a new chunk sized to it, a
straggler's copy), and how the call ends, once.  The drivers (``calldrivers``) act on
them; ``DistCall`` is the caller's face."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

from .chunks import ChunkSizer
from .distresult import DistEvent, EventCallback, JobMove, NodeFailure, NodeOutput
from .errors import NodeTimeoutError
from .job import Job
from .node import Node
from .rrepl import DEFAULT_EVAL_TIMEOUT

log = logging.getLogger("sshdist_kernel.dist")

STRAGGLER_FACTOR = 3.0
"""A chunk running this many times the median chunk's time is copied to an idle node."""

STRAGGLER_AFTER = 1.0
"""Seconds a chunk runs at least before it counts as straggling."""

MAX_ATTEMPTS = 3
"""Attempts of one chunk that may run at once: the first and two copies."""

STRAGGLER_ALONE = 5.0
"""Seconds a chunk runs before it is copied when no chunk has finished to compare it with."""


_CALL_NAMES = {"map": "dist_map", "eval": "distribute"}


@dataclass(eq=False)
class Chunk:
    index: int
    start: int
    items: list[Any]
    values: list[Any] | None = None
    attempts: list[Attempt] = field(default_factory=list)
    failed_on: Node | None = None  # set while it waits to move from a failed node


@dataclass(eq=False)
class Attempt:
    chunk: Chunk
    job: Job
    started: float  # when it was sent, then when the node began it (it reached the head)
    copy_of: Node | None = None  # a straggler copy: the slow node it races
    sent: float = 0.0
    alone: bool = False  # sent when its node held nothing else: its answer times a round trip
    cancel: threading.Event = field(default_factory=threading.Event)
    printed: list[NodeOutput] = field(default_factory=list)  # kept if this attempt counts


class CallBook(Future):
    """What a distributed call knows of its work (see the module), and its end."""

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
        self._chunks: list[Chunk] = []
        self._waiting: deque[Chunk] = deque()  # chunks to do again (their node failed)
        # Attempts sent and not answered, by id(attempt), in the order of their `started`.
        self._running: dict[int, Attempt] = {}
        self._held: dict[int, deque[Attempt]] = {}  # the same, by id(node), oldest first
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
        self._reserved: dict[int, deque[Chunk]] = {}  # the chapter's one job per node
        if reserved is not None:
            start = 0
            for node, part in reserved:
                chunk = Chunk(len(self._chunks), start, part)
                self._chunks.append(chunk)
                self._reserved.setdefault(id(node), deque()).append(chunk)
                start += len(part)
            self._carved = self.total

    @property
    def name(self) -> str:
        """``dist_map`` or ``distribute``: what the call is, as messages name it."""
        return _CALL_NAMES.get(self.kind, self.kind)

    @property
    def unit(self) -> str:
        """``items`` (dist_map) or ``expressions`` (distribute)."""
        return "items" if self.kind == "map" else "expressions"

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

    def _time_out(self) -> None:
        with self._lock:
            done = self._done_items
        self._finish(
            NodeTimeoutError(
                f"the call did not finish within {self.timeout:g} s: "
                f"{done} of {self.total} {self.unit} done"
            )
        )

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

    def _emit(self, event: DistEvent) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(event)
        except BaseException as exc:  # noqa: BLE001 - the caller's: it ends the call
            log.debug("on_event failed on %s", event, exc_info=True)
            self._finish(exc)

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

    # -- choosing work, and keeping count of it ---------------------------------------

    def _choose(self, node: Node, events: list[DistEvent]) -> tuple[Attempt | None, float | None]:
        """Under the lock: the work ``node`` should do now, or when to look again."""
        now = time.monotonic()
        attempt = self._choose_fresh(node, now, events)
        if attempt is not None:
            return attempt, None
        return self._straggler(node, now, events)

    def _choose_fresh(self, node: Node, now: float, events: list[DistEvent]) -> Attempt | None:
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
            chunk = Chunk(len(self._chunks), start, self._items[start : start + size])
            self._carved += size
            self._chunks.append(chunk)
            return self._attempt(chunk, node, now)
        return None

    def _straggler(
        self, node: Node, now: float, events: list[DistEvent]
    ) -> tuple[Attempt | None, float | None]:
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
        oldest: Attempt | None = None
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
        self, chunk: Chunk, node: Node, now: float, copy_of: Node | None = None
    ) -> Attempt:
        if self.kind == "map":
            job = Job("map", node, chunk.items, self.proc, chunk.index)
        else:
            job = Job("eval", node, None, chunk.items, chunk.index)
        attempt = Attempt(chunk, job, now, copy_of)
        chunk.attempts.append(attempt)
        return attempt

    def _all_given(self) -> bool:
        """Under the lock: every live node has had a chunk (counted before compared)."""
        return len(self._given) >= len(self._alive) and self._alive <= self._given

    def _hold(self, node: Node, attempt: Attempt) -> None:
        """Under the lock: ``attempt`` is on its way to ``node``, behind what it holds."""
        held = self._held.setdefault(id(node), deque())
        attempt.alone = not held
        attempt.sent = attempt.started
        held.append(attempt)
        self._held_items += attempt.job.size
        self._given.add(id(node))
        self._running[id(attempt)] = attempt

    def _pop_head(self, node: Node, attempt: Attempt, now: float) -> Attempt | None:
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

    def _keep_printed(self, node: Node, attempt: Attempt) -> None:
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

    def _send_deadline(self) -> float:
        """When sending a chunk (and waiting for the REPL to be free) must be done by."""
        limits = [t for t in (self._job_timeout, DEFAULT_EVAL_TIMEOUT) if t is not None]
        deadline = time.monotonic() + min(limits)
        return deadline if self._deadline is None else min(deadline, self._deadline)

    def _head_deadline(self, head: Attempt) -> float:
        """When the chunk a node works on must be answered: its job timeout from when
        the node began it, within the call's."""
        limits = [t for t in (self._job_timeout, DEFAULT_EVAL_TIMEOUT) if t is not None]
        deadline = head.started + min(limits)
        return deadline if self._deadline is None else min(deadline, self._deadline)

    def _past_deadline(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline - 0.01
