"""Ctrl-C stops a cell only while it runs: anywhere else it cost the cell its reply.

ipykernel turns SIGINT into ``KeyboardInterrupt`` for the whole of a request's
handling.  One that lands before the cell's evaluation begins (while ``execute_input``
is published) or after it returned (while the reply is made and sent) escapes the
handler: no reply goes out and the front end waits for it forever; inside a message
send it can leave half a message.  Under a Ctrl-C sent at random moments of short
cells, 5 % of the cells lost their reply.  Here SIGINT raises only inside
``interruptible()``, the cell's evaluation; one that comes before is kept and stops the
cell as it begins, one that comes after is dropped: the cell is over.

Inside the window SIGINT is ``ctrlc``'s, as for any caller of the library: during the
node's evaluation it sets the evaluation's cancel (raised inside paramiko, a
``KeyboardInterrupt`` could leave one of its locks held: the kernel wedged in a stress
of random interrupts), and only a person's input box takes it as an exception.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .ctrlc import cancelling_handler


class InterruptOnlyWhileRunning:
    """A mixin for an ipykernel ``Kernel``, listed before it."""

    _pending = False

    def pre_handler_hook(self) -> None:
        # ipykernel's puts default_int_handler in place; post_handler_hook puts back
        # the handler saved here, as it does for ipykernel's.
        self._pending = False
        self.saved_sigint_handler = signal.signal(signal.SIGINT, self._on_sigint)

    def _on_sigint(self, signum: int, frame: Any) -> None:
        self._pending = True  # outside the window: kept for it, or dropped after it

    @contextmanager
    def interruptible(self) -> Iterator[None]:
        """The part of a request a Ctrl-C stops, including one that came since the
        request began: an evaluation on a node by its cancel (``ctrlc``), anything
        else by ``KeyboardInterrupt``."""
        signal.signal(signal.SIGINT, cancelling_handler)
        try:
            if self._pending:
                self._pending = False
                raise KeyboardInterrupt
            yield
        finally:
            signal.signal(signal.SIGINT, self._on_sigint)
