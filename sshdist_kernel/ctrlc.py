"""Ctrl-C during an evaluation, on the main thread: a cancel, never an exception raised
wherever the main thread happens to be.

Python raises ``KeyboardInterrupt`` at whatever bytecode runs when SIGINT comes: inside
paramiko it can leave a lock held or half a packet sent, and the next evaluation on the
connection waits for ever.  While an evaluation runs, SIGINT (with Python's own handler
in place: a terminal, IPython, ipykernel's cells) sets the evaluation's cancel event
instead; the REPL's reader sees it within 50 ms, interrupts the remote code and the
caller gets its ``KeyboardInterrupt`` from there.  A wait that is the caller's own (an
``on_input`` asking a person) takes it as an exception, as it would anywhere.
"""

from __future__ import annotations

import _signal
import signal
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

_T = TypeVar("_T")


class CtrlCCancels:
    """``with CtrlCCancels(cancel) as guard:`` then pass ``guard.event`` as the
    evaluation's cancel; ``guard.hit`` says a Ctrl-C set it.  Off the main thread, or
    with a SIGINT handler of someone else's in place, it changes nothing.

    The handler is put in place once (``signal.signal`` costs microseconds, an
    evaluation a hundred): with no guard active it is Python's own."""

    __slots__ = ("event", "hit", "_outer", "_on", "_raising")

    def __init__(self, cancel: threading.Event | None) -> None:
        self.event = cancel
        self.hit = False
        self._outer: CtrlCCancels | None = None
        self._on = False
        self._raising = False

    def __enter__(self) -> CtrlCCancels:
        global _active
        if threading.current_thread() is not _MAIN:
            return self
        handler = _getsignal(signal.SIGINT)
        if handler is not cancelling_handler:
            if handler is not signal.default_int_handler:
                return self  # someone else's: theirs to run
            signal.signal(signal.SIGINT, cancelling_handler)
        if self.event is None:
            self.event = _Flag()  # type: ignore[assignment]
        self._outer, _active, self._on = _active, self, True
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        global _active
        if self._on:
            _active, self._on = self._outer, False

    def raising(self, callback: Callable[..., _T] | None) -> Callable[..., _T] | None:
        """``callback`` run with Ctrl-C raising again (a person answering a prompt
        must be able to stop it); one that came just before stops it as it begins."""
        if callback is None or not self._on:
            return callback

        def run(*args: Any) -> _T:
            if self.hit:
                raise KeyboardInterrupt
            self._raising = True
            try:
                return callback(*args)
            finally:
                self._raising = False

        return run


_MAIN = threading.main_thread()
# signal.getsignal turns the handler into an enum member when it can, through an
# exception when it cannot: microseconds an evaluation; the C module's own does not.
_getsignal = getattr(_signal, "getsignal", signal.getsignal)


class _Flag:
    """A cancel only this thread sets and the reader only reads: ``threading.Event``'s
    two methods without its lock and condition (made for every evaluation)."""

    __slots__ = ("_set",)

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set


_active: CtrlCCancels | None = None  # the innermost guard on the main thread


def cancelling_handler(signum: int, frame: Any) -> None:
    """SIGINT: the active guard's cancel, or (none, or a prompt waits) Python's own
    ``KeyboardInterrupt``.  Put in place by the first guard, or by whoever wants this
    behaviour in a window of their own (the Guile kernel's cells)."""
    guard = _active
    if guard is None or guard._raising:
        signal.default_int_handler(signum, frame)
        return
    guard.hit = True
    guard.event.set()  # type: ignore[union-attr]
