"""Connections shared by everything that goes through them: a login node (a
``ProxyJump`` host) is logged in to once, and every node behind it is a channel over
that one connection, as OpenSSH's ControlMaster does.  One connection means one
one-time code for all the nodes and one of the login node's ``MaxStartups`` slots.

The first user connects while the others wait for it (a person may be typing a code:
they wait as long as it takes); if that fails, those waiting get the same error
instead of each asking again.  The connection is closed when its last user lets go.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Hashable
from typing import Any


class _Entry:
    __slots__ = ("lock", "session", "users", "attempts", "error")

    def __init__(self) -> None:
        self.lock = threading.Lock()  # held while connecting
        self.session: Any = None
        self.users = 0
        self.attempts = 0  # ended, successfully or not
        self.error: BaseException | None = None


class SharedSessions:
    """Sessions by connection key, each with a count of its users."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[Hashable, _Entry] = {}

    def acquire(self, key: Hashable, connect: Callable[[], Any]) -> Any:
        """The connected session for ``key``, made with ``connect()`` if there is none
        or it broke; pair every successful call with ``release(key)``."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = _Entry()
            entry.users += 1
            seen = entry.attempts
        try:
            with entry.lock:
                if entry.session is not None and entry.session.is_connected():
                    return entry.session
                if entry.attempts > seen and entry.error is not None:
                    raise copy.copy(entry.error)  # it failed while we waited: same answer
                if entry.session is not None:
                    entry.session.close()
                    entry.session = None
                try:
                    entry.session = connect()
                except BaseException as exc:
                    entry.error = exc if isinstance(exc, Exception) else None
                    raise
                finally:  # counted as it ends: who came while it ran shares its outcome
                    entry.attempts += 1
                entry.error = None
                return entry.session
        except BaseException:
            self.release(key)
            raise

    def release(self, key: Hashable) -> None:
        """One user fewer; the last one closes the session."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return
            entry.users -= 1
            if entry.users > 0:
                return
            del self._entries[key]
            session = entry.session
        if session is not None:
            session.close()
