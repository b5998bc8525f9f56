"""A channel over a child process's pipes: the few methods of a paramiko ``Channel``
that ``records.RecordStream`` and ``Session.run`` use, for an ``ssh`` client process.

Reads and writes never block past the channel's timeout (``poll`` on the pipe, then a
non-blocking read or write); ``TimeoutError`` says the time ran out, ``b""`` that the
process's stdout ended.  ``status_event`` is set once the process has exited.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import threading

CLOSE_WAIT = 1.0
"""Seconds ``close`` waits for the process to end after SIGTERM before SIGKILL."""

_READ = select.POLLIN | select.POLLHUP | select.POLLERR
_WRITE = select.POLLOUT | select.POLLHUP | select.POLLERR


def _poll_ms(timeout: float | None) -> int | None:
    return None if timeout is None else max(int(timeout * 1000 + 0.999), 0)


class ExitEvent:
    """``threading.Event``'s reading half for a process's end: no thread waits on it."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self._process = process

    def is_set(self) -> bool:
        return self._process.poll() is not None

    def wait(self, timeout: float | None = None) -> bool:
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True


class PipeChannel:
    """stdin/stdout/stderr of ``process`` as a channel.  The process should be in a
    session of its own (``start_new_session=True``), so a Ctrl-C meant for Python
    does not end it; ``close`` ends it."""

    def __init__(self, process: subprocess.Popen[bytes], name: str = "ssh") -> None:
        if process.stdin is None or process.stdout is None or process.stderr is None:
            raise ValueError("a PipeChannel needs the process's stdin, stdout and stderr piped")
        self.process = process
        self.name = name
        self._in = process.stdin.fileno()
        self._out = process.stdout.fileno()
        self._err = process.stderr.fileno()
        for fd in (self._in, self._out, self._err):
            os.set_blocking(fd, False)
        self._out_poll = select.poll()
        self._out_poll.register(self._out, _READ)
        self._err_poll = select.poll()
        self._err_poll.register(self._err, _READ)
        self._in_poll = select.poll()
        self._in_poll.register(self._in, _WRITE)
        self._timeout: float | None = None
        self._out_eof = False
        self._err_eof = False
        self._closed = False
        self._close_lock = threading.Lock()
        self.status_event = ExitEvent(process)

    def __repr__(self) -> str:
        return f"<PipeChannel {self.name} pid {self.process.pid}{' closed' if self.closed else ''}>"

    # -- paramiko's Channel, the part we use ---------------------------------------

    def settimeout(self, timeout: float | None) -> None:
        self._timeout = timeout

    def gettimeout(self) -> float | None:
        return self._timeout

    @property
    def closed(self) -> bool:
        """Closed here, or the process ended (its side of the channel closed)."""
        return self._closed or self.process.poll() is not None

    def recv(self, nbytes: int) -> bytes:
        """Up to ``nbytes`` of stdout; ``b""`` at its end; ``TimeoutError`` if nothing
        came within the timeout."""
        if self._out_eof:
            return b""
        if self._closed:
            raise OSError("the channel is closed")
        while True:
            try:
                data = os.read(self._out, nbytes)
            except BlockingIOError:
                if not self._out_poll.poll(_poll_ms(self._timeout)):
                    raise TimeoutError(f"nothing from {self.name} in time") from None
                continue
            if not data:
                self._out_eof = True
            return data

    def recv_ready(self) -> bool:
        return not self._out_eof and bool(self._out_poll.poll(0))

    def recv_stderr_ready(self) -> bool:
        """Whether stderr has bytes (or its end) to read now; False once it ended."""
        return not self._err_eof and not self._closed and bool(self._err_poll.poll(0))

    def recv_stderr(self, nbytes: int) -> bytes:
        if self._err_eof or self._closed:
            return b""
        while True:
            try:
                data = os.read(self._err, nbytes)
            except BlockingIOError:
                if not self._err_poll.poll(_poll_ms(self._timeout)):
                    raise TimeoutError(f"nothing on stderr from {self.name} in time") from None
                continue
            if not data:
                self._err_eof = True
            return data

    def send(self, data: bytes | memoryview) -> int:
        """Write what the pipe takes now (waiting up to the timeout for room);
        ``TimeoutError`` if it took nothing, ``OSError`` if the process is gone."""
        if self._closed:
            raise OSError("the channel is closed")
        if not data:
            return 0
        while True:
            try:
                return os.write(self._in, data)
            except BlockingIOError:
                if not self._in_poll.poll(_poll_ms(self._timeout)):
                    raise TimeoutError(f"{self.name} took nothing in time") from None

    def sendall(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            view = view[self.send(view) :]

    def shutdown_write(self) -> None:
        """Close stdin: the remote command sees the end of its input."""
        try:
            self.process.stdin.close()  # type: ignore[union-attr]
        except OSError:
            pass

    def exit_status_ready(self) -> bool:
        return self.status_event.is_set()

    def recv_exit_status(self) -> int:
        """The process's exit status (the remote command's, or 255 for ssh's own
        failures); -1 if a signal ended it."""
        code = self.process.wait()
        return code if code >= 0 else -1

    def close(self) -> None:
        """End the process: its stdin closed first (the remote command sees its input
        end), then SIGTERM, SIGKILL if it lingers; bounded by ``CLOSE_WAIT``."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self.shutdown_write()
        process = self.process
        if process.poll() is None:
            try:
                process.send_signal(signal.SIGTERM)
                process.wait(CLOSE_WAIT)
            except subprocess.TimeoutExpired:
                process.kill()
                try:
                    process.wait(CLOSE_WAIT)
                except subprocess.TimeoutExpired:
                    pass  # reaped by Popen's own bookkeeping later
            except OSError:
                pass
        for pipe in (process.stdout, process.stderr):
            try:
                pipe.close()  # type: ignore[union-attr]
            except OSError:
                pass
