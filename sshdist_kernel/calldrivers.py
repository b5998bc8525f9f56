"""A distributed call's drivers: its work on each node, on that node's worker thread.
A node's chunks sent ahead and their answers read, the watcher waiting for a straggler,
and what each outcome means for the books (``callbook``): done, given back, moved off a
failed node, or the call's end.  Which nodes' drivers run is ``callstarts``'."""

from __future__ import annotations

import bisect
import logging
import time
from typing import Any

from .callbook import Attempt
from .callstarts import FAN_OUT, CallStarts
from .deadlines import call_at
from .distresult import DistEvent, JobMove, NodeFailure, NodeOutput
from .errors import AllNodesFailedError, EvalCancelled, NodeError, NodeReplError, NodeTimeoutError
from .job import check_job_language, job_request, job_values
from .node import Node
from .nodeworkers import waiting_work
from .pipeline import Pipeline

log = logging.getLogger("sshdist_kernel.dist")

WATCH_SLICE = 0.2
"""Seconds between a watcher's looks at whether another call waits for its node."""

HANDOFF_WAIT = 0.5
"""Seconds a node's driver waits, between chunks, for another caller waiting for the
node's REPL to take it (a lock is not fair: the driver would take it back at once)."""


class CallDrivers(CallStarts):
    """The drivers of a distributed call (see the module)."""

    # -- a driver: the call's work on one node, on that node's worker thread -----------

    def _drive(self, node: Node) -> None:
        pipe: Pipeline | None = None
        began = False  # a chunk was sent this turn: only then may the node be handed over
        try:
            while True:
                pipe = self._send_more(node, pipe, began)
                if pipe is None or not pipe.outstanding:
                    break
                began = True
                pipe = self._receive(node, pipe)
        finally:
            if pipe is not None:
                pipe.close()
            with self._lock:
                self._drivers -= 1
                stopped = self._drivers == 0 and self._finished
            if stopped:
                self._stopped.set()

    def _send_more(self, node: Node, pipe: Pipeline | None, began: bool) -> Pipeline | None:
        """Send ``node`` work while its window is open; the pipeline it is on after.
        ``began``: this turn has done a chunk, so it may end for another call's."""
        while True:
            if pipe is None or not pipe.outstanding:
                if pipe is not None:  # free between chunks: _take may wait (a watcher)
                    self._free(pipe)
                    pipe = None
                if began and self._hand_over(node):
                    return None
                attempt = self._take(node)
            elif pipe.others_waiting or waiting_work(node) > 1:
                # another caller, or another call's driver queued on this node's
                # worker: it gets in after the running chunk
                self._cancel_waiting(node, pipe)
                return pipe
            elif not pipe.rrepl.pipelines:
                return pipe
            else:
                attempt = self._take_more(node)
            if attempt is None:
                return pipe
            pipe = self._send(node, pipe, attempt)

    @staticmethod
    def _free(pipe: Pipeline) -> None:
        """Let go of the node's REPL between chunks; a caller waiting for it gets it
        first, not this thread again (under load the driver, already running, won
        every race for the lock: a with_ssh waited 19 s beside one-item chunks)."""
        waiting, rrepl = pipe.others_waiting, pipe.rrepl
        pipe.close()
        if waiting:
            rrepl.let_waiter_in(HANDOFF_WAIT)

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

    def _take(self, node: Node) -> Attempt | None:
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
                        # Another node watches only if one is free: one queued behind
                        # another call (this one) would take turns doing nothing with
                        # it; else one is woken once the chunk would straggle.
                        if any(not waiting_work(n) for n in self._idle_nodes):
                            self._wake_idle(1)
                        elif wake_at is not None:
                            self._rewatch_at(wake_at)
                        resign = True
                    else:
                        resign = False
                if resign:
                    self._start_drivers()
                    return None

    def _rewatch_at(self, when: float) -> None:
        """Under the lock: wake one idle node at ``when``, once a chunk straggles (its
        driver then has a copy to run, a chunk, not a watch)."""

        def wake() -> None:
            with self._lock:
                if self._finished or self._watcher is not None or not self._running:
                    return
                self._wake_idle(1)
            self._start_drivers()

        call_at(when, wake)

    def _take_more(self, node: Node) -> Attempt | None:
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

    def _send(self, node: Node, pipe: Pipeline | None, attempt: Attempt) -> Pipeline | None:
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
            self._free(pipe)
            pipe = None
        self._chunk_done(node, attempt, values, result.node_seconds, begins)
        return pipe

    def _give_back(self, node: Node, attempt: Attempt) -> None:
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

    def _failed(self, node: Node, attempt: Attempt, exc: BaseException) -> None:
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
        attempt: Attempt,
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

    def _node_failed(self, node: Node, attempt: Attempt, error: NodeError) -> None:
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

    def _job_error(self, node: Node, attempt: Attempt, error: NodeReplError) -> NodeReplError:
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
