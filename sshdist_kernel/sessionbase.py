"""What every kind of session shares, paramiko's (``session``) and OpenSSH's
(``opensshsession``): where it goes, a command run to its end over ``open_exec``,
and ``with`` blocks that close it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from .errors import NodeTimeoutError
from .sshconfig import CONNECT_TIMEOUT, SessionOptions


@dataclass(frozen=True)
class CommandResult:
    """The exit status and output of one command run on the host."""

    status: int
    stdout: str
    stderr: str


class SessionBase:
    """A session's shared half; a kind of session gives ``open_exec`` and ``close``."""

    options: SessionOptions

    @property
    def host(self) -> str:
        return self.options.hostname

    @property
    def port(self) -> int:
        return self.options.port

    @property
    def user(self) -> str:
        return self.options.user

    def open_exec(self, command: str, timeout: float | None = None) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def run(
        self, command: str, timeout: float = CONNECT_TIMEOUT, what: str | None = None
    ) -> CommandResult:
        """Run ``command`` to its end and return its status and output; ``what``
        names the command in errors (long scripts would make unreadable ones)."""
        what = what or (command if len(command) <= 60 else command[:57] + "...")
        channel = self.open_exec(command, timeout)
        deadline = time.monotonic() + timeout
        out, err = bytearray(), bytearray()
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise NodeTimeoutError(
                        f"{what} on {self.options.target} did not finish within {timeout:g} s"
                    )
                channel.settimeout(min(left, 0.2))
                try:
                    chunk = channel.recv(65536)
                except TimeoutError:
                    chunk = None
                while channel.recv_stderr_ready():
                    err += channel.recv_stderr(65536)
                if chunk == b"":
                    break
                out += chunk or b""
            finished = channel.status_event.wait(max(deadline - time.monotonic(), 0.1))
            status = channel.recv_exit_status() if finished else -1
            while channel.recv_stderr_ready():
                err += channel.recv_stderr(65536)
        finally:
            channel.close()
        return CommandResult(status, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
