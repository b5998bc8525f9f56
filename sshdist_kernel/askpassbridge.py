"""The Python end of ssh's SSH_ASKPASS: ssh runs ``askpass.py``, which asks over a
private Unix socket served here, so a key's passphrase or a one-time code is asked of
the session's ``prompt(text, echo)`` (a notebook's front end, the caller's thread)
and never of a terminal ssh cannot see."""

from __future__ import annotations

import hashlib
import os
import secrets
import shlex
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

ASKPASS_SCRIPT = Path(__file__).with_name("askpass.py")

_program_lock = threading.Lock()


def _askpass_program(directory: Path) -> str:
    """An executable that runs askpass.py with this Python (SSH_ASKPASS takes one path)."""
    text = (
        f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(ASKPASS_SCRIPT))} "$@"\n'
    )
    name = "askpass-" + hashlib.sha256(text.encode()).hexdigest()[:12]
    path = directory / name
    with _program_lock:
        if not path.is_file() or path.read_text() != text:
            tmp = directory / f".{name}.{os.getpid()}"
            tmp.write_text(text)
            tmp.chmod(0o700)
            os.replace(tmp, path)
    return str(path)


class Askpass:
    """A private Unix socket (mode 600) that ssh's askpass helper asks through; each
    question goes to ``prompt(text, echo)`` and its answer back to the helper.  Answers
    are never kept.  ``waited`` counts the seconds spent asking (not the connection's);
    ``unanswered`` says which question nobody could answer, and why (the prompt raised:
    ``PromptUnavailable``, say), after which ssh's further questions get no answer
    without asking again."""

    def __init__(self, prompt: Callable[[str, bool], str | None], directory: Path) -> None:
        self.prompt = prompt
        self.path = str(directory / f"ap-{secrets.token_hex(6)}")
        self.waited = 0.0
        self.asking_since: float | None = None
        self.unanswered: str | None = None
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.bind(self.path)
            os.chmod(self.path, 0o600)
            self._sock.listen(4)
            self._sock.settimeout(0.2)
        except OSError:
            self._sock.close()
            raise
        self._thread = threading.Thread(target=self._serve, daemon=True, name="sshdist askpass")
        self._thread.start()

    def env(self, directory: Path) -> dict[str, str]:
        return {
            "SSH_ASKPASS": _askpass_program(directory),
            "SSH_ASKPASS_REQUIRE": "force",
            "SSHDIST_ASKPASS_SOCKET": self.path,
        }

    def seconds_asking(self) -> float:
        since = self.asking_since
        return self.waited + (time.monotonic() - since if since is not None else 0.0)

    def _ask(self, text: str, echo: bool) -> str | None:
        if self.unanswered is not None:
            return None
        self.asking_since = time.monotonic()
        try:
            return self.prompt(text, echo)
        except Exception as exc:  # noqa: BLE001 - no answer: ssh gives up this method
            self.unanswered = f"{text.strip()!r}: {exc or type(exc).__name__}"
            return None
        finally:
            self.waited += time.monotonic() - self.asking_since
            self.asking_since = None

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                try:
                    conn.settimeout(5.0)
                    data = bytearray()
                    while chunk := conn.recv(4096):
                        data += chunk
                    text, _, hint = bytes(data).partition(b"\0")
                    answer = self._ask(text.decode("utf-8", "replace"), hint == b"confirm")
                    conn.settimeout(5.0)
                    conn.sendall(b"n" if answer is None else b"y" + str(answer).encode())
                    del answer
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        self._thread.join(1.0)
