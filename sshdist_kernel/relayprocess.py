"""A ``DelayRelay`` in a Python process of its own (``python -m
sshdist_kernel.relayprocess``), as the latency bench runs it: so that the relay never
waits for the client's GIL (a busy main thread would hold it for up to 5 ms at a time)
and the client never waits for it.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import selectors
import signal
import subprocess
import sys
from collections.abc import Iterable

from . import delayrelay
from .delayrelay import JOIN_TIMEOUT, DelayRelay

PR_SET_TIMERSLACK = 29


class RelayProcess:
    """A ``DelayRelay`` in a Python process of its own; it ends when ``close()`` closes
    its stdin, or when this process ends."""

    def __init__(self, targets: Iterable[int], delay: float, start_timeout: float = 10.0):
        command = [sys.executable, "-m", "sshdist_kernel.relayprocess", "--delay", repr(delay)]
        self.delay = delay
        self._proc = subprocess.Popen(
            [*command, *map(str, targets)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        try:
            line = self._first_line(start_timeout)
            self.ports = {int(k): int(v) for k, v in json.loads(line).items()}
        except BaseException:
            self.close()
            raise

    def _first_line(self, timeout: float) -> bytes:
        assert self._proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self._proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout):
                raise RuntimeError(f"the delay relay process did not start in {timeout:g} s")
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the delay relay process ended (exit {self._proc.wait(5)})")
        return line

    @property
    def pid(self) -> int:
        return self._proc.pid

    def __enter__(self) -> RelayProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self, timeout: float = JOIN_TIMEOUT) -> None:
        for pipe in (self._proc.stdin, self._proc.stdout):
            if pipe is not None:
                pipe.close()
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout)


def _exact_timers() -> None:
    """Wake this process's waits on time, not up to 50 us late (Linux's default timer
    slack): a relay's timers are its whole job.  Threads started after inherit it."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the default slack it is
        pass


def main(argv: list[str] | None = None) -> int:
    """Relay the ports given until stdin ends; the first line out is the port map."""
    parser = argparse.ArgumentParser(description=delayrelay.__doc__.split("\n\n")[0])
    parser.add_argument("--delay", type=float, required=True, help="one-way delay, seconds")
    parser.add_argument("ports", type=int, nargs="+", help="target ports on 127.0.0.1")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # close cleanly
    _exact_timers()
    with DelayRelay(args.ports, args.delay) as relay:
        print(json.dumps(relay.ports), flush=True)
        sys.stdin.buffer.read()  # until EOF: the parent closed it, or ended
    return 0


if __name__ == "__main__":
    sys.exit(main())
