"""How a node reaches its REPL: a fresh ``guile`` on an exec channel, or a REPL server's
(on a Unix socket or a TCP port), opened within a deadline, replaced when it breaks,
the SSH session reconnected, and closed; ``Node`` evaluates on top of it."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from .errors import NodeError, NodeTimeoutError
from .guile import GuileRepl
from .rrepl import START_TIMEOUT, ReplLanguage, Rrepl
from .server import UNIX, node_run_server, node_server_running, open_server_port, server_path
from .session import Session

log = logging.getLogger("sshdist_kernel.node")


class NodeConnection:
    """A node's SSH session and the REPL on it: opened, replaced, reconnected, closed
    (``repl_port``: see ``Node``)."""

    def __init__(
        self,
        session: Session,
        repl_port: int | str | None = None,
        *,
        language: ReplLanguage | None = None,
        start_server: bool = True,
    ) -> None:
        port_number = (
            isinstance(repl_port, int) and not isinstance(repl_port, bool) and 0 < repl_port < 65536
        )
        if not (repl_port is None or repl_port == UNIX or port_number):
            raise ValueError(
                f"repl_port must be None, 'unix' or a port number (1-65535), not {repl_port!r}"
            )
        self.session = session
        self.repl_port = repl_port
        self.language = language or GuileRepl()
        self.start_server = start_server
        self._rrepl: Rrepl | None = None
        self._lock = threading.Lock()
        self._server_key: bytes | None = None  # a TCP server's key, read once
        self.name = session.options.alias
        self.restarts = 0
        """How many times a broken REPL was replaced by a fresh one (definitions lost)."""
        self.last_loss: str | None = None
        """Why the last replaced REPL was given up."""
        self.closed = False
        """``close()`` was called, and no call has reopened the node since."""
        self._closings = 0  # close() calls: a reconnect under way sees one came

    def __repr__(self) -> str:
        port = "exec" if self.repl_port is None else self.repl_port
        s = self.session
        return f"#<node {s.user}@{s.host}:{s.port}/{port} {id(self):x}>"

    # -- the REPL ----------------------------------------------------------------

    def open_rrepl(self, timeout: float = START_TIMEOUT) -> Rrepl:
        """A new remote REPL on its own channel (``node-open-rrepl``), within ``timeout``."""
        deadline = time.monotonic() + timeout

        def left() -> float:
            seconds = deadline - time.monotonic()
            if seconds <= 0:
                raise NodeTimeoutError(
                    f"could not open a REPL on {self.session.options.target} within {timeout:g} s"
                )
            return seconds

        if not self.session.is_connected():
            self.session.connect(timeout=left())
        where = self.session.options.target
        if self.repl_port is None:
            return self._exec_rrepl(where, left)
        if self.start_server and not node_server_running(self):
            node_run_server(self)
        if self.repl_port == UNIX:
            bridge = self.language.bridge_command('(getenv "SSHDIST_SOCKET")')
            channel = self.session.open_exec(
                f"SSHDIST_SOCKET={self._server_path('sock')} {bridge}", timeout=left()
            )
        else:
            return open_server_port(self, where, left())
        return self.server_rrepl(channel, left())

    def _exec_rrepl(self, where: str, left: Callable[[], float]) -> Rrepl:
        """A REPL on an exec channel.  A connection that died between the look at it
        and the channel's start (a killed ControlMaster takes a moment to be gone) is
        made again, once, within the time left."""
        for attempt in (1, 2):
            try:
                channel = self.session.open_exec(self.language.command(), timeout=left())
                return Rrepl(
                    channel, where=where, language=self.language, alive=self._alive, timeout=left()
                )
            except NodeTimeoutError:
                raise
            except NodeError:
                if attempt == 2 or self.session.is_connected():
                    raise
                self.session.connect(timeout=left())
        raise AssertionError("unreachable")

    def server_rrepl(self, channel: Any, timeout: float) -> Rrepl:
        """The REPL a server serves on ``channel``: interrupted through a second channel."""
        return Rrepl(
            channel,
            where=self.session.options.target,
            language=self.language,
            interrupter=self._interrupt_server_client,
            alive=self._alive,
            timeout=timeout,
        )

    def _alive(self, timeout: float, conclusive: bool = True) -> bool:
        """Whether the SSH connection answers a keepalive in time; one that does not,
        given its whole time (``conclusive``), is dropped, so the next call reconnects
        instead of waiting on it."""
        if self.session.responds(timeout):
            return True
        if conclusive:
            log.warning("%s stopped answering; dropping its connection", self.name)
            self.session.close()
        return False

    def _interrupt_server_client(self, rrepl: Rrepl) -> None:
        """A server runs every client in one process, and a busy client reads nothing:
        ask the server, on a second channel, to interrupt this client's thread."""
        helper = self.open_rrepl()
        try:
            helper.interrupt_client(rrepl.client_id)
        finally:
            helper.close()

    def _ready_rrepl(self, timeout: float | None = None) -> Rrepl:
        """The node's REPL; a broken one is replaced (and the session reconnected),
        within ``timeout`` seconds."""
        left = START_TIMEOUT if timeout is None else timeout
        if not self._lock.acquire(timeout=left):
            raise NodeTimeoutError(f"{self.name} is still opening its REPL")
        try:
            if self._rrepl is None or self._rrepl.broken:
                old, self._rrepl = self._rrepl, None
                closings = self._closings
                try:
                    self._rrepl = self.open_rrepl(timeout=min(left, START_TIMEOUT))
                finally:
                    closed_meanwhile = self._closings != closings
                    if closed_meanwhile:  # what was made (or half made) goes too
                        self.close()
                if closed_meanwhile:
                    raise NodeError(f"{self.name} was closed while it connected")
                self.closed = False
                if old is not None:
                    self.restarts += 1
                    self.last_loss = old.lost or "its REPL was closed"
                    log.warning(
                        "%s: a fresh REPL replaced one that broke (%s); %s",
                        self.name,
                        self.last_loss,
                        self.restart_consequence,
                    )
            return self._rrepl
        finally:
            self._lock.release()

    @property
    def restart_consequence(self) -> str:
        """What a replaced REPL means for the user's state, in words."""
        if self.repl_port is None:
            return "definitions made before are lost"
        return "the REPL server keeps its definitions; only this connection is new"

    @property
    def rrepl(self) -> Rrepl:
        """The node's REPL, reopened (and the session reconnected) after a failure."""
        return self._ready_rrepl()

    @property
    def ready(self) -> bool:
        """Whether the node's REPL is open now (asking never connects)."""
        return self._rrepl is not None and not self._rrepl.broken

    @property
    def repl_language(self) -> str:
        """The language the node's REPL reads now (``,L ecmascript`` changes it);
        ``"scheme"`` before the REPL opens.  Never connects."""
        return self._rrepl.repl_language if self._rrepl is not None else "scheme"

    @property
    def version(self) -> str | None:
        """The open REPL's version (Guile's), or None before it opens; never connects."""
        return self._rrepl.version if self._rrepl is not None else None

    def reconnect(self, timeout: float = START_TIMEOUT) -> None:
        """Reopen the SSH connection if it dropped, within ``timeout`` seconds; the REPL
        is not opened (the next call opens a fresh one when the old one went with it)."""
        if not self._lock.acquire(timeout=timeout):
            raise NodeTimeoutError(f"{self.name} is still opening its REPL")
        closings = self._closings
        try:
            if not self.session.is_connected():
                self.session.connect(timeout=timeout)
        finally:
            if self._closings != closings:  # close() did not wait for this: undo it
                self.session.close()
            self._lock.release()

    def close(self) -> None:
        """Close the REPL and the session, now: a reconnect under way (waiting on a person
        typing the login node's code, say) is not waited for; it closes what it made."""
        self.closed = True
        self._closings += 1
        rrepl, self._rrepl = self._rrepl, None
        if rrepl is not None:
            rrepl.close()
        self.session.close()

    def drop_rrepl(self) -> None:
        """Close the node's REPL (its server went away); the next call opens a new one."""
        with self._lock:
            if self._rrepl is not None:
                self._rrepl.close()
                self._rrepl = None

    def _server_path(self, suffix: str) -> str:
        return server_path(self, suffix)
