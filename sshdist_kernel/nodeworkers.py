"""One long-lived worker thread per node: a distributed call starts no threads, and
work for one node runs one piece at a time, in the order it was given.

A worker that has had nothing to do for ``IDLE_EXIT`` seconds ends; the next piece of
work for its node starts a new one.  Workers hold their node only weakly, and a node
that is dropped ends its worker as soon as it is collected (hundreds of nodes made and
dropped again and again would otherwise leave hundreds of idle threads behind for
``IDLE_EXIT``).
"""

from __future__ import annotations

import logging
import queue
import threading
import weakref
from collections.abc import Callable

from .node import Node

log = logging.getLogger(__name__)

IDLE_EXIT = 30.0
"""Seconds a worker waits for work before it ends."""

_lock = threading.Condition()  # notified when a worker's last piece of work ends
_workers: weakref.WeakKeyDictionary[Node, _Worker] = weakref.WeakKeyDictionary()
_here = threading.local()  # .node: the node whose worker this thread is
_DROPPED = object()  # the task a worker finds when its node has been dropped


class _Worker:
    def __init__(self, node: Node) -> None:
        self.node = weakref.ref(node)
        self.tasks: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self.pending = 0  # tasks given and not finished (the running one included)
        self.thread = threading.Thread(target=self._run, daemon=True, name=f"sshdist {node.name}")
        self._dropped = weakref.finalize(node, self.tasks.put, _DROPPED)

    def _run(self) -> None:
        _here.node = self.node
        while True:
            try:
                task = self.tasks.get(timeout=IDLE_EXIT)
            except queue.Empty:
                with _lock:  # work is put under this lock: none can slip in now
                    if not self.tasks.empty():
                        continue
                    node = self.node()
                    if node is not None and _workers.get(node) is self:
                        del _workers[node]
                    self._dropped.detach()  # a long-lived node's workers leave none behind
                    return
            if task is _DROPPED:
                return
            try:
                task()
            except BaseException:  # noqa: BLE001 - a task's failure is its caller's
                log.exception("work for a node failed")
            finally:
                with _lock:
                    self.pending -= 1
                    if not self.pending:
                        _lock.notify_all()
            del task


def run_on(node: Node, task: Callable[[], None]) -> None:
    """Run ``task`` on ``node``'s worker thread, after the work given to it before."""
    with _lock:
        worker = _workers.get(node)
        if worker is None:
            worker = _workers[node] = _Worker(node)
            worker.thread.start()
        worker.pending += 1
        worker.tasks.put(task)


def waiting_work(node: Node) -> int:
    """How many pieces of work for ``node`` are given and not finished."""
    worker = _workers.get(node)
    return 0 if worker is None else worker.pending


def wait_idle(nodes: list[Node], timeout: float) -> bool:
    """Wait until no work given for ``nodes`` is left (the work of a stopped call
    included); False if some is left after ``timeout`` seconds."""
    with _lock:
        return _lock.wait_for(
            lambda: not any(w.pending for n in nodes if (w := _workers.get(n))), timeout
        )


def current_node() -> Node | None:
    """The node whose worker thread this is, if it is one."""
    ref = getattr(_here, "node", None)
    return ref() if ref is not None else None
