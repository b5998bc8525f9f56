"""A REPL channel held by one evaluation at a time, and what stops one: interrupts, and an
evaluation its caller gave up on interrupted in the background (the recovery holds the
REPL meanwhile) until the REPL is back at its prompt, or given up when it does not come
back.  ``rrepl.Rrepl`` evaluates on top of it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from .errors import EvalCancelled, NodeTimeoutError
from .records import CANCEL_POLL, RecordStream, deadline_after, seconds_left
from .replchannel import ReplChannel

RECOVERY_TRIES = 3
"""Interrupts sent to an abandoned evaluation before its REPL is given up."""

RECOVERY_WAIT = 2.0
"""Seconds an interrupted evaluation has to come back to the prompt, per interrupt."""

ACK_WAIT = 1.5
"""Seconds the REPL has to acknowledge an interrupt (its pump thread answers at once,
whatever the code does): one that does not is stopped (SIGSTOP) or hung, and is given
up at once, so the next call gets a fresh REPL within its own timeout."""


class _NoAck(Exception):
    """The REPL did not acknowledge an interrupt in time: it is given up."""


class InterruptibleRepl(ReplChannel):
    """A REPL channel with its lock (one evaluation at a time) and its interrupts, sent
    on the channel or, with an ``interrupter``, from outside (see ``Rrepl``)."""

    client_id: int
    """The REPL's number for this client (a REPL server serves several), from its hello."""

    def __init__(
        self,
        stream: RecordStream,
        where: str,
        interrupter: Callable[[InterruptibleRepl], None] | None,
    ) -> None:
        super().__init__(stream, where)
        self._interrupter = interrupter
        self._lock = threading.Lock()  # one evaluation at a time
        self._waiters = 0  # callers waiting for the lock
        self._settled = threading.Event()  # clear while an abandoned evaluation stops
        self._settled.set()

    def let_waiter_in(self, timeout: float) -> None:
        """Just after letting the REPL go: wait up to ``timeout`` seconds until a caller
        that waited for it has taken it (or none waits)."""
        deadline = time.monotonic() + timeout
        while self._waiters and not self._lock.locked() and time.monotonic() < deadline:
            time.sleep(0.0005)

    def _acquire(self, deadline: float | None, cancel: threading.Event | None) -> bool:
        """Take the REPL for one evaluation before ``deadline``; ``EvalCancelled`` if
        ``cancel`` is set first."""
        self._waiters += 1  # a pipeline stops sending ahead for it (see Pipeline)
        try:
            if cancel is None:
                left = seconds_left(deadline)
                return self._lock.acquire(timeout=-1 if left is None else left)
            while not cancel.is_set():
                left = seconds_left(deadline)
                if left is not None and left <= 0:
                    return False
                slice_ = CANCEL_POLL if left is None else min(left, CANCEL_POLL)
                if self._lock.acquire(timeout=slice_):
                    return True
            raise EvalCancelled(f"the wait for {self.where} was cancelled before it was free")
        finally:
            self._waiters -= 1

    def _abandon(self, wait: float) -> str:
        """Stop waiting for an evaluation: interrupt it and resynchronise in the
        background (which then owns the lock), waiting ``wait`` seconds for that;
        say how it went."""
        self._stream.cancel = None  # the recovery reads on, whatever the caller cancels
        self._settled.clear()

        def recover() -> None:
            try:
                self._recover()
            finally:
                self._settled.set()
                self._lock.release()

        threading.Thread(target=recover, daemon=True, name=f"sshdist recover {self.where}").start()
        self._settled.wait(wait)
        return self.state_after_abandon()

    @property
    def recovering(self) -> bool:
        """An abandoned evaluation is being interrupted; the REPL is not ready yet."""
        return not self._settled.is_set()

    def wait_settled(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for an abandoned evaluation to stop; True
        once none is stopping (the REPL may still have been closed: see ``broken``)."""
        return self._settled.wait(timeout)

    def _recover(self) -> None:
        for attempt in range(RECOVERY_TRIES):
            try:
                self.interrupt()
                if attempt == 0 and self._interrupter is None:
                    self._await_ack()
                self._resync(time.monotonic() + RECOVERY_WAIT)
                return
            except _NoAck:
                self._stream.lost = (
                    f"the REPL on {self.where} did not acknowledge an interrupt within "
                    f"{ACK_WAIT:g} s (its guile stopped or hung)"
                )
                break
            except NodeTimeoutError:
                continue
            except Exception:  # noqa: BLE001 - whatever went wrong, the REPL is given up
                break
        if not self.broken:
            self._stream.lost = self._stream.lost or (
                f"the evaluation on {self.where} did not stop after {RECOVERY_TRIES} interrupts"
            )
            self.close()

    def _await_ack(self) -> None:
        """Read (and drop) records until the interrupts sent are acknowledged; ``_NoAck``
        if that takes over ``ACK_WAIT`` seconds."""
        deadline = time.monotonic() + ACK_WAIT
        try:
            while self._acks_due:
                self._next_record(deadline, "waiting for the interrupt to be acknowledged")
        except NodeTimeoutError:
            raise _NoAck() from None

    def state_after_abandon(self) -> str:
        """What became of an abandoned evaluation, in words for an error message."""
        if self.broken:
            return (
                "its REPL could not be stopped and was closed: the next call starts a fresh "
                "REPL, without the earlier definitions"
            )
        if self.recovering:
            return "it is being interrupted; the next call waits for that"
        return "it was interrupted, and the REPL kept its definitions"

    def interrupt(self) -> None:
        """Stop the running evaluation, as Ctrl-C would."""
        if self.broken:
            return
        if self._interrupter is not None:
            self._interrupter(self)
            return
        self._send_interrupt(self.client_id, deadline_after(RECOVERY_WAIT))
