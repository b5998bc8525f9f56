"""``distribute`` and ``dist_map``: work split over nodes, run in parallel, with failover.

One worker thread per distinct node runs that node's jobs one at a time.  A
``NodeError`` (node unreachable, connection dropped, guile gone, job timed out) moves
the node's jobs to the live node with the least work queued; a ``NodeReplError``
(the code failed) cancels the call.  Results keep the order of the input, always.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from . import sexp
from .errors import AllNodesFailedError, NodeError, NodeReplError, NodeTimeoutError
from .job import Job, assign_eval, assign_map, hand_out_job, set_job_node
from .node import Node
from .rrepl import DEFAULT_EVAL_TIMEOUT

log = logging.getLogger(__name__)

JOIN_TIMEOUT = 10.0
"""Seconds a finished call waits for its workers to let go of their nodes."""

STOP_WAIT = 0.5
"""Seconds a failed or timed-out call waits for its workers before it raises."""


@dataclass(frozen=True)
class NodeFailure:
    """A node that failed during a call, why, and the job it was running."""

    node: Node
    error: BaseException
    job: Job | None

    def __str__(self) -> str:
        return f"{self.node.name}: {self.error}"


@dataclass(frozen=True)
class JobMove:
    """A job handed from a failed node to a live one."""

    job: Job
    from_node: Node
    to_node: Node

    def __str__(self) -> str:
        return f"job {self.job.index} moved from {self.from_node.name} to {self.to_node.name}"


@dataclass(frozen=True)
class DistEvent:
    """What a progress display hears: ``start``, ``done`` (detail: seconds),
    ``failed`` (detail: the error) or ``moved`` (detail: the new node) for a job."""

    kind: str
    job: Job
    node: Node
    detail: Any = None


EventCallback = Callable[[DistEvent], None]


class DistList(list):
    """``dist_map``'s result: a plain list, plus ``failures`` and ``moves`` on the way."""

    failures: tuple[NodeFailure, ...] = ()
    moves: tuple[JobMove, ...] = ()


class DistTuple(tuple):
    """``distribute``'s results, in the order of the expressions, plus ``failures`` and
    ``moves`` on the way."""

    failures: tuple[NodeFailure, ...] = ()
    moves: tuple[JobMove, ...] = ()


def _as_node_list(nodes: Node | Iterable[Node]) -> list[Node]:
    found = [nodes] if isinstance(nodes, Node) else list(nodes)
    if not found:
        raise ValueError("no nodes to hand the work to")
    for n in found:
        if not isinstance(n, Node):
            raise TypeError(f"{n!r} is not a node: make one with make_node")
    return found


def _check_source(what: str, source: object, one_datum: bool = False) -> str:
    if not isinstance(source, str):
        raise TypeError(f"{what} must be Scheme source text, not {type(source).__name__}")
    try:
        forms = sexp.split_forms(source)
    except ValueError:
        forms = []
    if not forms or (one_datum and len(forms) > 1):
        kind = "one Scheme expression" if one_datum else "complete Scheme expressions"
        raise ValueError(f"{what} is not {kind}: {source!r}")
    return source


def dist_map(
    nodes: Node | Iterable[Node],
    proc: str,
    lst: Iterable[Any],
    *,
    timeout: float | None = None,
    job_timeout: float | None = None,
    on_event: EventCallback | None = None,
) -> DistList:
    """``dist-map``: map ``proc`` (Scheme source: ``"(lambda (x) (* x x))"`` or a
    procedure's name) over ``lst`` (Python values, sent as Scheme data) on ``nodes``.

    ``timeout`` bounds the whole call; ``job_timeout`` (default ``timeout``) one job on
    one node, after which that node counts as failed and the job moves on."""
    node_list = _as_node_list(nodes)
    _check_source("proc", proc, one_datum=True)
    items = list(lst)
    sexp.write(items)  # a value with no Scheme datum fails here, before any node is busy
    jobs = assign_map(node_list, items, proc)
    results, failures, moves = _Run(node_list, jobs, timeout, job_timeout, on_event).run()
    out = DistList(value for chunk in results for value in chunk)
    out.failures, out.moves = failures, moves
    return out


def distribute(
    nodes: Node | Iterable[Node],
    *exprs: str,
    timeout: float | None = None,
    job_timeout: float | None = None,
    on_event: EventCallback | None = None,
) -> DistTuple:
    """``distribute``: evaluate the expressions in parallel on ``nodes``; their
    results, in the order given."""
    node_list = _as_node_list(nodes)
    for i, expr in enumerate(exprs):
        _check_source(f"expression {i + 1}", expr)
    jobs = assign_eval(node_list, list(exprs))
    results, failures, moves = _Run(node_list, jobs, timeout, job_timeout, on_event).run()
    out = DistTuple(value for chunk in results for value in chunk)
    out.failures, out.moves = failures, moves
    return out


class _Run:
    """One call's jobs, workers and bookkeeping; every field is guarded by ``cv``."""

    def __init__(
        self,
        nodes: list[Node],
        jobs: list[Job],
        timeout: float | None,
        job_timeout: float | None,
        on_event: EventCallback | None,
    ) -> None:
        self.nodes = list({id(n): n for n in nodes}.values())  # a node listed twice: one worker
        self.jobs = jobs
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.timeout = timeout
        self.job_timeout = job_timeout if job_timeout is not None else timeout
        self.on_event = on_event
        self.cv = threading.Condition()
        self.queues: dict[int, deque[Job]] = {id(n): deque() for n in self.nodes}
        for job in jobs:
            self.queues[id(job.node)].append(job)
        self.alive = {id(n) for n in self.nodes}
        self.running: dict[int, Job] = {}
        self.results: list[list[Any] | None] = [None] * len(jobs)
        self.done = 0
        self.failures: list[NodeFailure] = []
        self.moves: list[JobMove] = []
        self.fatal: BaseException | None = None

    # -- the caller's side ---------------------------------------------------------

    def run(self) -> tuple[list[list[Any]], tuple[NodeFailure, ...], tuple[JobMove, ...]]:
        if not self.jobs:
            return [], (), ()
        workers = [
            threading.Thread(target=self._work, args=(n,), daemon=True, name=f"dist {n.name}")
            for n in self.nodes
        ]
        for w in workers:
            w.start()
        try:
            with self.cv:
                while self.fatal is None and self.done < len(self.jobs):
                    left = None if self.deadline is None else self.deadline - time.monotonic()
                    if left is not None and left <= 0:
                        self.fatal = NodeTimeoutError(
                            f"the call did not finish within {self.timeout:g} s: "
                            f"{self.done} of {len(self.jobs)} jobs done"
                        )
                        break
                    self.cv.wait(left)
                fatal = self.fatal
                self.cv.notify_all()
        except BaseException:  # Ctrl-C: the nodes stop their jobs too
            with self.cv:
                self.fatal = self.fatal or NodeError("the call was interrupted")
                self.cv.notify_all()
            threading.Thread(target=self._interrupt_running, daemon=True).start()
            raise
        if fatal is not None:
            # The caller gets control back within a moment; nodes that take longer
            # to stop finish stopping in the background (their next call waits).
            threading.Thread(target=self._interrupt_running, daemon=True).start()
            give_up = time.monotonic() + STOP_WAIT
            for w in workers:
                w.join(max(give_up - time.monotonic(), 0))
            fatal.failures = tuple(self.failures)  # type: ignore[attr-defined]
            fatal.moves = tuple(self.moves)  # type: ignore[attr-defined]
            raise fatal
        for w in workers:
            w.join(JOIN_TIMEOUT)
        return list(self.results), tuple(self.failures), tuple(self.moves)  # type: ignore[arg-type]

    def _interrupt_running(self) -> None:
        with self.cv:
            busy = [job.node for job in self.running.values()]
        for node in busy:
            try:
                node.interrupt()
            except (NodeError, OSError) as exc:
                log.debug("could not interrupt %s: %s", node.name, exc)

    # -- a worker, one per node --------------------------------------------------------

    def _next_job(self, node: Node) -> Job | None:
        with self.cv:
            while True:
                if self.fatal is not None or id(node) not in self.alive:
                    return None
                if self.queues[id(node)]:
                    job = self.queues[id(node)].popleft()
                    self.running[id(node)] = job
                    return job
                if self.done == len(self.jobs):
                    return None
                self.cv.wait()

    def _job_timeout(self) -> float | None:
        limits = [t for t in (self.job_timeout, DEFAULT_EVAL_TIMEOUT) if t is not None]
        if self.deadline is not None:
            limits.append(max(self.deadline - time.monotonic(), 0.001))
        return min(limits)

    def _work(self, node: Node) -> None:
        while (job := self._next_job(node)) is not None:
            self._emit(DistEvent("start", job, node))
            started = time.monotonic()
            try:
                values = hand_out_job(job, timeout=self._job_timeout())
            except NodeError as exc:
                self._node_failed(node, job, exc)
                return
            except NodeReplError as exc:
                self._job_failed(node, job, exc)
                return
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                with self.cv:
                    self.fatal = self.fatal or exc
                    self.cv.notify_all()
                return
            with self.cv:
                self.running.pop(id(node), None)
                self.results[job.index] = values
                self.done += 1
                self.cv.notify_all()
            self._emit(DistEvent("done", job, node, time.monotonic() - started))

    def _node_failed(self, node: Node, job: Job, error: NodeError) -> None:
        moved: list[JobMove] = []
        with self.cv:
            self.running.pop(id(node), None)
            self.alive.discard(id(node))
            self.failures.append(NodeFailure(node, error, job))
            orphans = [job, *self.queues[id(node)]]
            self.queues[id(node)].clear()
            if self.fatal is None and not self.alive:
                self.fatal = AllNodesFailedError(
                    "every node failed:\n" + "\n".join(f"  {f}" for f in self.failures),
                    failures=tuple(self.failures),
                )
            elif self.fatal is None:
                for orphan in orphans:
                    target = self._least_loaded()
                    self.queues[id(target)].append(set_job_node(orphan, target))
                    moved.append(JobMove(orphan, node, target))
                self.moves.extend(moved)
            self.cv.notify_all()
        log.warning("%s failed: %s", node.name, error)
        self._emit(DistEvent("failed", job, node, error))
        for m in moved:
            log.warning("%s", m)
            self._emit(DistEvent("moved", m.job, node, m.to_node))

    def _least_loaded(self) -> Node:
        """The live node with the fewest items queued or running (call under ``cv``)."""

        def load(n: Node) -> int:
            running = self.running.get(id(n))
            return sum(j.size for j in self.queues[id(n)]) + (running.size if running else 0)

        return min((n for n in self.nodes if id(n) in self.alive), key=load)

    def _job_failed(self, node: Node, job: Job, error: NodeReplError) -> None:
        what = f"{job.size} item(s)" if job.type == "map" else f"{job.size} expression(s)"
        failure = NodeReplError(
            f"job {job.index} ({job.type}, {what}): {error.message}",
            key=error.key,
            node=node.name,
            output=error.output,
            error_output=error.error_output,
            job=job,
        )
        with self.cv:
            self.running.pop(id(node), None)
            if self.fatal is None:
                self.fatal = failure
            self.cv.notify_all()
        self._emit(DistEvent("failed", job, node, failure))

    def _emit(self, event: DistEvent) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(event)
        except Exception:  # a broken display must not break the computation
            log.exception("the on_event callback failed on %s", event)
