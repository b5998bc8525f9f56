"""The framed record stream of one remote REPL channel: ``<TAG><LEN>\\n<bytes>`` records
read within deadlines, requests sent whole, and a connection that stops answering
noticed instead of waited on.  The REPL's meaning of the records is ``rrepl``'s."""

from __future__ import annotations

import codecs
import math
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from .errors import EvalCancelled, NodeError, NodeTimeoutError

PROBE_AFTER = 2.0
"""Seconds of silence during a wait after which the connection is asked whether it lives."""

PROBE_DEADLINE = 3.0
"""Seconds a live connection has to answer that question (an SSH keepalive)."""

_POLL = 0.25  # the longest a wait goes without looking at the channel's stderr
CANCEL_POLL = 0.05
"""Seconds a cancellable wait goes at most without looking at its cancel event."""
_HEADER = re.compile(rb"([a-z])(\d+)\n")
_HELLO_MARKER = b"\0sshdist-rrepl\0"


def checked_timeout(timeout: float | None) -> float | None:
    """``timeout`` as seconds to wait: None or infinity waits on; zero, negative or
    not-a-number is a ``ValueError``, before anything is sent."""
    if timeout is None or timeout == math.inf:
        return None
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds or None, not {timeout!r}")
    return float(timeout)


def deadline_after(timeout: float | None) -> float | None:
    """The ``time.monotonic()`` instant ``timeout`` seconds from now (None: never)."""
    return None if timeout is None else time.monotonic() + timeout


def seconds_left(deadline: float | None) -> float | None:
    return None if deadline is None else max(deadline - time.monotonic(), 0.0)


class RecordStream:
    """Records from, and requests to, one channel.  ``alive(timeout, conclusive)`` tells
    whether the connection answers a keepalive within ``timeout`` (``conclusive``: the
    keepalive had its whole ``PROBE_DEADLINE``, so no answer means the connection is
    gone, and it may be dropped); once anything fails the stream is ``broken`` and
    ``lost`` says why."""

    def __init__(
        self,
        channel: Any,
        where: str,
        alive: Callable[[float, bool], bool] | None = None,
        missing: Callable[[int, str], str] | None = None,
    ) -> None:
        self.channel = channel
        self.where = where
        # What to say when the loop's command was not found (127) or could not run
        # (126), from the status and the channel's stderr: the REPL language knows.
        self._missing = missing
        self._alive = alive
        self._buf = bytearray()
        self._pos = 0  # where the next record starts in _buf
        self._send_lock = threading.Lock()  # an interrupt may be sent while a request runs
        self._stderr = codecs.getincrementaldecoder("utf-8")("replace")
        self._side_stderr: list[str] = []  # what the channel's own stderr carried
        self.broken = False
        self.lost: str | None = None
        self.cancel: threading.Event | None = None  # set: the reader stops waiting

    def skip_banner(self, deadline: float) -> str:
        """Drop what the remote login shell printed before the loop started (a
        chatty ~/.bashrc, a message of the day) and return it."""
        while True:
            at = self._buf.find(_HELLO_MARKER)
            if at >= 0:
                banner = bytes(self._buf[:at]).decode("utf-8", "replace")
                self._pos = at + len(_HELLO_MARKER)
                return banner
            if len(self._buf) > 1 << 16:
                self.fail(
                    f"{self.where} printed this instead of starting the REPL: "
                    f"{bytes(self._buf[:200]).decode('utf-8', 'replace')!r}"
                )
            self._fill(deadline, "starting")

    def next_record(self, deadline: float | None, doing: str) -> tuple[str, bytes]:
        """The next record's tag and payload; ``NodeTimeoutError`` past ``deadline``,
        ``NodeError`` if the channel breaks or carries something else."""
        if deadline is not None and time.monotonic() > deadline:
            # Records already here do not extend the bound (a slow output callback).
            raise self._late(doing)
        buf = self._buf  # _fill grows and compacts it in place
        while True:
            m = _HEADER.match(buf, self._pos)
            if m:
                start = m.end()
                end = start + int(m[2])
                if len(buf) >= end:
                    tag = chr(buf[self._pos])
                    self._pos = end
                    return tag, bytes(buf[start:end])
            elif len(buf) - self._pos > 24:
                junk = bytes(self._buf[self._pos : self._pos + 60])
                self.fail(f"the REPL on {self.where} sent something unexpected: {junk!r}")
            self._fill(deadline, doing)

    def _late(self, doing: str) -> NodeTimeoutError:
        message = f"{self.where} did not answer within the time allowed while {doing}"
        return NodeTimeoutError(message)

    def take_stderr(self) -> str:
        """What the channel's own stderr carried since the last call."""
        if not self._side_stderr:  # nearly always: asked once a record
            return ""
        text = "".join(self._side_stderr)
        self._side_stderr.clear()
        return text

    def _fill(self, deadline: float | None, doing: str) -> None:
        """Read what has arrived into the buffer.

        The wait goes in short slices: between them the channel's stderr is read (a
        full stderr window would stall stdout too), and after ``PROBE_AFTER`` seconds
        of silence the connection is asked whether it still lives."""
        quiet_since = time.monotonic()
        cancel = self.cancel
        poll = _POLL if cancel is None else CANCEL_POLL
        while True:
            if cancel is not None and cancel.is_set():
                raise EvalCancelled(f"the wait for {self.where} was cancelled while {doing}")
            left = seconds_left(deadline)
            if left is not None and left <= 0:
                raise self._late(doing)
            try:
                self.channel.settimeout(poll if left is None else min(left, poll))
                chunk = self.channel.recv(1 << 20)
            except TimeoutError:  # before OSError: a timeout is one
                chunk = None
            except (OSError, EOFError) as exc:
                self.fail(f"the connection to {self.where} broke while {doing}: {exc}")
            self._read_stderr()
            if chunk == b"":
                self.fail(self._death_message(doing))
            if chunk:
                del self._buf[: self._pos]  # compact once per read, not once per record
                self._pos = 0
                self._buf += chunk
                return
            if self._alive is not None and time.monotonic() - quiet_since >= PROBE_AFTER:
                probe = PROBE_DEADLINE if left is None else min(PROBE_DEADLINE, left)
                conclusive = probe >= PROBE_DEADLINE
                if not self._alive(probe, conclusive):
                    if not conclusive and seconds_left(deadline) == 0:
                        # The call's time ran out before the keepalive had its own: no
                        # sign the connection is gone (a busy machine answers late).
                        raise self._late(doing)
                    self.fail(
                        f"the connection to {self.where} stopped answering (no reply to an "
                        f"SSH keepalive within {probe:.2g} s) while {doing}; it was dropped, "
                        "and the next call reconnects"
                    )
                quiet_since = time.monotonic()

    def _read_stderr(self) -> None:
        try:
            while self.channel.recv_stderr_ready():
                data = self.channel.recv_stderr(1 << 20)
                if not data:
                    break
                self._side_stderr.append(self._stderr.decode(data))
        except (AttributeError, OSError, EOFError):
            pass

    def _death_message(self, doing: str) -> str:
        self._read_stderr()
        status = None
        try:
            if self.channel.status_event.wait(1.0):
                status = self.channel.recv_exit_status()
        except AttributeError:
            pass
        text = "".join(self._side_stderr).strip()
        if status in (126, 127) and self._missing is not None:
            return self._missing(status, text)
        detail = f" (exit status {status})" if status not in (None, -1) else ""
        return f"the remote REPL on {self.where} ended{detail} while {doing}" + (
            f": {text}" if text else ""
        )

    def send(self, data: bytes, deadline: float | None, doing: str) -> None:
        """Send all of ``data``; a send cut short leaves half a request, so the stream
        is closed then.  Ctrl-C halfway finishes the request before it goes on: the
        stream stays in step, and the caller can interrupt what it asked for."""
        with self._send_lock:
            view, sent = memoryview(data), 0
            try:
                left = seconds_left(deadline)
                self.channel.settimeout(None if left is None else max(left, 0.01))
                # Bytes, not a memoryview, whole when it can: paramiko takes a
                # memoryview only after two exceptions (1.5 us a request).
                while sent < len(view):
                    sent += self.channel.send(bytes(view[sent:]) if sent else data)
            except TimeoutError:
                self.lost = f"{self.where} did not take a request in time"
                self.close()
                raise NodeTimeoutError(
                    f"{self.where} did not take the request within the time allowed while "
                    f"{doing}; its REPL was closed and the next call starts a fresh one"
                ) from None
            except (OSError, EOFError) as exc:
                if getattr(self.channel, "closed", False):  # the REPL ended while idle
                    self.fail(self._death_message("waiting for a request"))
                self.fail(f"could not send to {self.where}: {exc}")
            except BaseException:
                if sent < len(view):
                    try:
                        self.channel.settimeout(PROBE_DEADLINE)
                        self.channel.sendall(view[sent:])
                    except Exception:  # noqa: BLE001 - half a request: the stream is done
                        self.lost = f"a request to {self.where} was cut short"
                        self.close()
                raise

    def fail(self, message: str) -> None:
        """Mark the stream broken and raise ``NodeError(message)``."""
        self.broken = True
        self.lost = self.lost or message
        raise NodeError(message)

    def close(self) -> None:
        self.broken = True
        try:
            self.channel.close()
        except (OSError, EOFError):
            pass
