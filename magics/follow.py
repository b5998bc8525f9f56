"""Following a live ``DistCall`` from the main thread.

The call's events come from its worker threads; the magics' callback only queues them
(cheap, thread-safe), and the thread that runs the cell draws them: progress, live
lines.  So every print and widget update happens where IPython and ipykernel expect
it, in the cell that made the call.  Ctrl-C while following stops the nodes' work (they
keep their definitions) before the ``KeyboardInterrupt`` goes on, as ``dist_map`` does.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from typing import Any

from sshdist_kernel import DistCall, DistEvent, EventCallback, Node, NodeError, NodeReplError, sexp

from .display import Progress
from .errors import CallStopped, explain
from .printed import LiveLines, show_by_node

TICK = 0.1
"""Seconds between refreshes of the progress while no event comes."""

STOP_WAIT = 1.0
"""Seconds a stopped call waits for its nodes to let go before the error goes on."""

_ENDED = object()


class CallEvents:
    """A queue of one call's events: ``put`` is the call's ``on_event``."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.put = self._queue.put
        self.ended_at: float | None = None  # when the call ended (its done callback)

    def ended(self, _call: object = None) -> None:
        if self.ended_at is None:
            self.ended_at = time.monotonic()
        self._queue.put(_ENDED)

    def take(self, timeout: float) -> list[Any]:
        """What arrived: waits up to ``timeout`` for the first, then takes the rest."""
        try:
            got = [self._queue.get(timeout=timeout)]
        except queue.Empty:
            return []
        while True:
            try:
                got.append(self._queue.get_nowait())
            except queue.Empty:
                return got


def follow(
    call: DistCall, events: CallEvents, progress: Progress, live: LiveLines | None = None
) -> Any:
    """Draw ``call``'s events until it ends; its result, or its error raised."""
    call.add_done_callback(events.ended)
    try:
        draw_until_ended(events, progress, live)
        return call.result()
    except KeyboardInterrupt:
        call.stop(KeyboardInterrupt(), wait=STOP_WAIT)
        raise
    except BaseException:
        call.wait_stopped(STOP_WAIT)
        raise
    finally:
        drain(events, progress, live)  # what the workers said before they let go
        if live is not None:
            live.close()


def draw_until_ended(events: CallEvents, progress: Progress, live: LiveLines | None) -> None:
    """Take the events into ``progress`` (and ``live``) until the call's end comes."""
    while True:
        for item in events.take(TICK):
            if item is _ENDED:
                progress.ended = events.ended_at
                return
            _draw(item, progress, live)
        progress.tick()


def drain(events: CallEvents, progress: Progress, live: LiveLines | None) -> None:
    """Draw what is queued, without waiting."""
    for item in events.take(0):
        if item is not _ENDED:
            _draw(item, progress, live)


def settle(nodes: list[Node], wait: float = STOP_WAIT) -> str:
    """After a stop, wait up to ``wait`` seconds in all for the nodes to be ready again;
    ``nodes ready``, or which are still stopping or lost their REPL."""
    deadline = time.monotonic() + wait
    states = {n.name: n.settle(max(deadline - time.monotonic(), 0.0)) for n in nodes}
    stopping = [name for name, state in states.items() if state == "stopping"]
    closed = [name for name, state in states.items() if state == "closed"]
    parts = []
    if stopping:
        parts.append(
            f"{', '.join(stopping)} still stopping (the next call waits for it, "
            "or for a fresh REPL if it will not stop)"
        )
    if closed:
        parts.append(
            f"{', '.join(closed)} lost the REPL (the next call starts a fresh one, "
            "without the definitions)"
        )
    if parts:
        return "; ".join(parts)
    return "node ready" if len(nodes) == 1 else "nodes ready"


def _draw(event: DistEvent, progress: Progress, live: LiveLines | None) -> None:
    if event.kind == "output":
        if live is not None:
            live.add(event.node.name, event.detail)
    else:
        progress.hear(event)


def finished_well(call: DistCall) -> bool:
    """The call has its result (an interrupt that comes after that stops nothing)."""
    return call.done() and not call.cancelled() and call.exception() is None


def follow_here(
    what: str,
    nodes: list[Node],
    total: int,
    start: Callable[[EventCallback], DistCall],
    *,
    stream: bool,
    widgets: bool,
    on_end: Callable[[], None],
    fold: bool | None = None,
) -> Any:
    """Start a call and draw it in this cell: its progress (and with ``stream`` what the
    nodes print, as they print it), its summary line, then what the nodes printed, by
    node (``fold``: see ``show_by_node``); errors as ``SshdistError``.  ``on_end`` runs
    once the call ended, before anything is said of it."""
    progress = Progress(what, nodes, total, widgets=widgets)
    live = LiveLines() if stream else None
    events = CallEvents()
    order = [n.name for n in nodes]
    try:
        call = start(events.put)
    except (NodeError, ValueError, TypeError) as exc:  # its arguments: nothing ran or showed
        raise explain(exc) from None
    if live is not None:
        progress.show()  # the widget above the streamed lines, not amid them after a second
    try:
        try:
            results = follow(call, events, progress, live)
        finally:
            if progress.line is not None:
                progress.line.clear()  # the progress line goes on under what is said
            on_end()
    except KeyboardInterrupt:
        if not finished_well(call):
            progress.close("stopped", say=False)
            raise CallStopped(progress.stopped("interrupted", settle(nodes))) from None
        results = call.result()  # Ctrl-C came after the call's end: its result stands
        progress.ended = events.ended_at
    except (NodeError, NodeReplError, sexp.SexpError, ValueError) as exc:
        progress.close("failed")
        if live is None:
            show_by_node(getattr(exc, "outputs", {}), order, fold)
        raise explain(exc) from None
    except BaseException:
        progress.close("failed")
        raise
    progress.close()
    if live is None:
        show_by_node(results.outputs, order, fold)
    return results
