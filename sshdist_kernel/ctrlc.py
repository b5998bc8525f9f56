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

import signal
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

_T = TypeVar("_T")


class CtrlCCancels:
    """``with CtrlCCancels(cancel) as guard:`` then pass ``guard.event`` as the
    evaluation's cancel; ``guard.hit`` says a Ctrl-C set it.  Off the main thread, or
    with a SIGINT handler of someone else's in place, it changes nothing."""

    __slots__ = ("event", "hit", "_previous", "_raising")

    def __init__(self, cancel: threading.Event | None) -> None:
        self.event = cancel
        self.hit = False
        self._previous: Any = None
        self._raising = False

    def __enter__(self) -> CtrlCCancels:
        if threading.current_thread() is not threading.main_thread():
            return self
        if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
            return self
        if self.event is None:
            self.event = threading.Event()
        self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self._raising:
            raise KeyboardInterrupt
        self.hit = True
        self.event.set()  # type: ignore[union-attr]

    def raising(self, callback: Callable[..., _T] | None) -> Callable[..., _T] | None:
        """``callback`` run with Ctrl-C raising again (a person answering a prompt
        must be able to stop it); one that came just before stops it as it begins."""
        if callback is None or self._previous is None:
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
