"""Which nodes of a distributed call have a driver (its work on that node, on the
node's worker thread: ``calldrivers``): started as a tree, woken from idle, and a node
handed over between chunks to another call that waits for it."""

from __future__ import annotations

from .callbook import CallBook
from .node import Node
from .nodeworkers import run_on, waiting_work

FAN_OUT = 2
"""Drivers each driver starts when it finds work (and the caller at the start)."""


class CallStarts(CallBook):
    """Starting a call's drivers (see the module); the driver itself is ``_drive``."""

    # Drivers start as a tree: the caller starts two, and each that finds work starts
    # two more, so no thread waits on one starter and no node is woken for nothing.
    # A driver with nothing to do ends, and its node waits in _idle_nodes, except one:
    # the watcher, which waits for a running chunk to straggle.  A chunk put back in
    # the queue, or a watcher gone to copy a chunk, starts a driver for an idle node.
    # So each node costs at most one thread hand-off a call.

    def _drive(self, node: Node) -> None:
        """The call's work on ``node`` (``calldrivers.CallDrivers``)."""
        raise NotImplementedError

    def _grow(self, count: int) -> None:
        """Under the lock: start drivers for up to ``count`` unstarted nodes, the tree's
        next branches.  Never idle ones: they found nothing to do, while an unstarted
        node may be the only one that can do its jobs (chunksize="per-node")."""
        while count > 0 and self._unstarted and not self._finished:
            self._to_start.append(self._unstarted.popleft())
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
            run_on(node, lambda node=node: self._next_turn(node))

    def _hand_over(self, node: Node) -> bool:
        """Between chunks, while another call's driver waits for ``node``'s worker
        thread: this turn ends and the next is queued behind it, so calls sharing a node
        take turns, a chunk each (the first one kept the node to its end before: a call
        started beside a ``--bg`` one waited for all of it).  True if handed over."""
        if waiting_work(node) <= 1:
            return False
        with self._lock:
            if self._finished or id(node) not in self._alive:
                return False
        run_on(node, lambda: self._next_turn(node))
        return True

    def _next_turn(self, node: Node) -> None:
        """A driver's turn, queued on ``node``'s worker (a first one, or the next after
        ``_hand_over``): counted as a driver only once it runs, so a call stopped
        meanwhile does not wait for a node another call holds."""
        with self._lock:
            if self._finished:
                return
            self._drivers += 1
        self._drive(node)
