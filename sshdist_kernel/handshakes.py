"""Handshakes paced per sshd, and a handshake the server dropped tried again.

OpenSSH's sshd drops new connections past ``MaxStartups`` unauthenticated ones
(10:30:100 by default: from 10 at once, 30 % of new ones are dropped, rising to all at
100).  A dropped connection looks like a server that does not speak SSH: it is closed
before the banner.  So at most ``PER_HOST`` handshakes run at once against one sshd
(one address and port, reached one way), and a connection closed before its banner is
tried again after a short, growing, jittered pause, within the caller's time.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Hashable, Iterator
from contextlib import contextmanager

from .errors import ConnectError

PER_HOST = 8
"""Handshakes at once against one sshd: below MaxStartups' default start of 10, so
another client's handshake or two still fit."""

FIRST_PAUSE = 0.05
LONGEST_PAUSE = 1.0


def pause_before(attempt: int) -> float:
    """Seconds to wait before try ``attempt`` (1, 2, ...): doubling from 50 ms up to a
    second, each between half and one and a half times that, so clients that were
    dropped together do not come back together."""
    return min(LONGEST_PAUSE, FIRST_PAUSE * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5)


def dropped_too_often(target: str, times: int, seconds: float, why: object) -> ConnectError:
    """The error once a server has dropped ``times`` connections before the banner in
    the ``seconds`` allowed: what MaxStartups means, and what to do."""
    return ConnectError(
        f"{target} closed the connection before the SSH banner {times} time(s) in "
        f"{seconds:g} s ({why}): sshd drops new connections while too many others are "
        "logging in (its MaxStartups, 10 at once by default); connect fewer at once "
        "(max_connecting=) or ask the host's administrator"
    )


class _Gate:
    __slots__ = ("slots", "users")

    def __init__(self, size: int) -> None:
        self.slots = threading.BoundedSemaphore(size)
        self.users = 0


class HandshakeGates:
    """A semaphore of ``per_host`` slots per sshd, kept while anyone uses it."""

    def __init__(self, per_host: int = PER_HOST) -> None:
        self.per_host = per_host
        self._lock = threading.Lock()
        self._gates: dict[Hashable, _Gate] = {}

    @contextmanager
    def slot(self, key: Hashable, deadline: float) -> Iterator[None]:
        """Hold one of ``key``'s slots for the block; ``TimeoutError`` if none is free
        by ``deadline`` (a ``time.monotonic`` time)."""
        with self._lock:
            gate = self._gates.get(key)
            if gate is None:
                gate = self._gates[key] = _Gate(self.per_host)
            gate.users += 1
        try:
            if not gate.slots.acquire(timeout=max(deadline - time.monotonic(), 0.0)):
                raise TimeoutError(f"no handshake slot for {key!r} in time")
            try:
                yield
            finally:
                gate.slots.release()
        finally:
            with self._lock:
                gate.users -= 1
                if gate.users == 0:
                    del self._gates[key]


GATES = HandshakeGates()
"""The process's gates: every session's handshake passes one."""
