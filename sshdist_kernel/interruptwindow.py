"""Ctrl-C stops a cell only while it runs: anywhere else it cost the cell its reply.

ipykernel turns SIGINT into ``KeyboardInterrupt`` for the whole of a request's
handling.  One that lands before the cell's evaluation begins (while ``execute_input``
is published) or after it returned (while the reply is made and sent) escapes the
handler: no reply goes out and the front end waits for it forever; inside a message
send it can leave half a message.  Under a Ctrl-C sent at random moments of short
cells, 5 % of the cells lost their reply.  Here SIGINT raises only inside
``interruptible()``, the cell's evaluation; one that comes before is kept and stops the
cell as it begins, one that comes after is dropped: the cell is over.

Inside the evaluation a Ctrl-C is no exception either: it sets the evaluation's cancel
event, which the REPL's reader looks at between reads (within 50 ms).  Raised there, a
``KeyboardInterrupt`` could land inside paramiko and leave one of its locks held (the
kernel wedged in a stress of random interrupts).  Only a wait of the kernel's own, the
input box, takes it as an exception (``raising()``).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class InterruptOnlyWhileRunning:
    """A mixin for an ipykernel ``Kernel``, listed before it."""

    _armed = False
    _pending = False
    _cancel: threading.Event | None = None
    _raising = False

    def pre_handler_hook(self) -> None:
        # ipykernel's puts default_int_handler in place; post_handler_hook puts back
        # the handler saved here, as it does for ipykernel's.
        self._pending = False
        self.saved_sigint_handler = signal.signal(signal.SIGINT, self._on_sigint)

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if not self._armed:
            self._pending = True
        elif self._cancel is None or self._raising:
            raise KeyboardInterrupt
        else:
            self._cancel.set()

    @contextmanager
    def interruptible(self, cancel: threading.Event | None = None) -> Iterator[None]:
        """The part of a request a Ctrl-C stops, including one that came since the
        request began: by setting ``cancel`` if given, else by ``KeyboardInterrupt``."""
        self._armed, self._cancel = True, cancel
        try:
            if self._pending:
                self._pending = False
                raise KeyboardInterrupt
            yield
        finally:
            self._armed, self._cancel = False, None

    @contextmanager
    def raising(self) -> Iterator[None]:
        """Inside ``interruptible(cancel)``: a wait a Ctrl-C ends as
        ``KeyboardInterrupt`` (one that came just before ends it as it begins)."""
        saved, self._raising = self._raising, True
        try:
            if self._cancel is not None and self._cancel.is_set():
                raise KeyboardInterrupt
            yield
        finally:
            self._raising = saved
