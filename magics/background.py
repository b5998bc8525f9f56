"""Calls that run while the notebook goes on (``--bg``).

A background call's events are drawn by a thread of its own: into a widget with a
Cancel button in a notebook, and nowhere in a terminal, where nothing may print under
the prompt.  ``%dist_result`` then waits for the call and shows what it made, as
ipyparallel's ``%pxresult`` does.
"""

from __future__ import annotations

import concurrent.futures as futures
import threading
import time
from collections.abc import Callable
from typing import Any

from sshdist_kernel import DistCall, EventCallback, Node

from .display import QUIET_SECONDS, Progress, StatusLine
from .errors import explain
from .follow import STOP_WAIT, TICK, CallEvents, drain, draw_until_ended, settle
from .printed import show_by_node
from .progressview import ProgressView


def final_state(call: DistCall) -> str:
    """``"done"``, ``"failed"`` or ``"stopped"``, for an ended call."""
    if call.cancelled():
        return "stopped"
    return "failed" if call.exception() is not None else "done"


class BackgroundCall:
    """A call started with ``--bg``: ``call`` is the ``DistCall``; ``lines`` are the
    failovers and copies it met (for a terminal, which saw none of them live)."""

    def __init__(
        self,
        what: str,
        nodes: list[Node],
        total: int,
        start: Callable[[EventCallback], DistCall],
        widgets: bool,
        fold: bool | None = None,
    ) -> None:
        self.nodes = nodes
        self.fold = fold  # --group-outputs
        self.lines: list[str] = []
        self.ending = ""  # the line a cancelled call ends with
        self.ended = threading.Event()  # the drawer has drawn the end
        self._events = CallEvents()
        self.view = ProgressView(what, total, on_cancel=self.cancel) if widgets else None
        self.progress = Progress(what, nodes, total, view=self.view, say=self._say, terminal=False)
        self.call = start(self._events.put)
        self.call.add_done_callback(self._events.ended)
        if self.view is not None:
            self.view.update(self.progress)
            self.view.show()
        threading.Thread(target=self._draw, daemon=True, name=f"sshdist {what} view").start()

    def _say(self, text: str) -> None:
        self.lines.append(text.strip())
        if self.view is not None:
            self.view.log(text)

    def cancel(self) -> None:
        """The Cancel button: stop the call, interrupting the nodes' work."""
        self.call.cancel()

    def busy_with(self, nodes: list[Node]) -> list[Node]:
        """Those of ``nodes`` this call still works on."""
        if self.call.done():
            return []
        mine = {id(n) for n in self.nodes}
        return [n for n in nodes if id(n) in mine]

    def _draw(self) -> None:
        try:
            draw_until_ended(self._events, self.progress, None)
            self.call.wait_stopped(STOP_WAIT)
            drain(self._events, self.progress, None)
            if self.call.cancelled():  # said before the close: the summary keeps it
                self.ending = self.progress.stopped("cancelled", settle(self.nodes))
                if self.view is not None:
                    self.view.log(self.ending)
            self.progress.close(final_state(self.call), say=False)
        finally:
            self.ended.set()

    def __repr__(self) -> str:
        return repr(self.call)


def _busy(calls: list[BackgroundCall], nodes: list[Node]) -> tuple[str, str, bool] | None:
    """Those of ``nodes`` running background calls hold, named; what those calls are;
    whether there is one node."""
    busy: dict[str, str] = {}
    for bg in calls:
        for node in bg.busy_with(nodes):
            busy.setdefault(node.name, bg.progress.what)
    if not busy:
        return None
    return ", ".join(busy), " and ".join(sorted(set(busy.values()))), len(busy) == 1


def describe_busy(calls: list[BackgroundCall], nodes: list[Node]) -> str | None:
    """A line saying which of ``nodes`` running background calls hold, or None."""
    busy = _busy(calls, nodes)
    if busy is None:
        return None
    names, whats, one = busy
    verb, them = ("is", "it") if one else ("are", "them")
    return f"{names} {verb} busy with a background {whats}: this waits for {them} between its jobs"


def still_busy(calls: list[BackgroundCall], nodes: list[Node]) -> str | None:
    """After an interrupt: which of ``nodes`` are still busy with background calls
    (which the interrupt leaves alone), or None."""
    busy = _busy(calls, nodes)
    if busy is None:
        return None
    names, whats, one = busy
    return f"{names} {'is' if one else 'are'} still busy with the background {whats}, which goes on"


def wait_for(call: DistCall, bg: BackgroundCall | None) -> None:
    """Wait until ``call`` ends (a cancelled call too); in a terminal, after a second,
    its progress line while it runs."""
    line = StatusLine() if bg is not None and bg.view is None else None
    began = time.monotonic()
    try:
        while True:
            try:
                call.exception(timeout=TICK)
                return
            except futures.CancelledError:
                return
            except futures.TimeoutError:
                now = time.monotonic()
                if line is not None and now - began >= QUIET_SECONDS:
                    line.show(bg.progress.status(now), now)  # type: ignore[union-attr]
    finally:
        if line is not None:
            line.clear()


def stopped_waiting(call: DistCall, name: str | None, bg: BackgroundCall | None) -> str:
    """Ctrl-C in ``%dist_result``: the wait stops, the call goes on (as a
    ``Future.result()`` or ipyparallel's ``wait()`` interrupted); how to stop it."""
    what = bg.progress.what if bg is not None else call.name
    stop = f"{name}.cancel()" if name else "its cancel()"
    if bg is not None and bg.view is not None:
        stop += " or its Cancel button"
    return (
        f"stopped waiting for the {what} ({call.done_text()}); it goes on: "
        f"%dist_result{f' {name}' if name else ''} waits again, {stop} stops it"
    )


def show_result(call: DistCall, bg: BackgroundCall | None) -> Any:
    """An ended call as ``%dist_result`` shows it: the summary, what the nodes printed;
    its results, or its error as ``SshdistError``."""
    nodes = bg.nodes if bg is not None else call.nodes
    if bg is not None:
        bg.ended.wait(STOP_WAIT + 1)
        if bg.view is None:
            for text in bg.lines:
                print(text)
        if not call.cancelled():
            print(bg.progress.summary(final_state(call)))
    order = [n.name for n in nodes]
    fold = bg.fold if bg is not None else None
    if call.cancelled():  # a CancelledError, as job.result() raises, with its partial
        try:
            call.exception(0)
        except futures.CancelledError as exc:  # it says how far the call had got
            exc.args = (bg.ending if bg is not None else f"{exc}; {settle(nodes)}",)
            raise explain(exc) from None
    exc = call.exception()
    if exc is not None:
        show_by_node(getattr(exc, "outputs", {}), order, fold)
        raise explain(exc) from None
    results = call.result()
    show_by_node(results.outputs, order, fold)
    return results
