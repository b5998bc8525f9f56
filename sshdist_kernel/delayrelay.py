"""A TCP relay on 127.0.0.1 that holds everything it carries for a set one-way delay,
each way: distance for local nodes on a kernel without ``sch_netem``.

``DelayRelay([port, ...], 0.005)`` listens on a free loopback port per target port
(``relay.ports``: target -> its relay port) and forwards each connection to its target.
Every read is timestamped and written on at that time plus the delay, in order; a busy
stream gains no delay from it (latency, not a bandwidth cap).  A connection reaches its
target one delay after it was accepted, as a SYN would, so a server that speaks first
(sshd) is heard a round trip after the connect, as over a network.  EOF (half-close)
and resets travel the same way, after the data before them.

One thread does all of it with a selector, so relaying costs little CPU (the bench
measures the client's CPU too, on 2 cores).  ``relayprocess.RelayProcess`` runs one in a
Python of its own, as the bench does.
"""

from __future__ import annotations

import errno
import select
import selectors
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Iterable

HOST = "127.0.0.1"
FD_SETSIZE = 1024
"""select() takes descriptors below this only."""
READ_SIZE = 256 * 1024
HELD_LIMIT = 64 * 1024 * 1024
"""Bytes held one way before the relay stops reading that side (memory stays bounded;
64 MiB in 50 ms is 1.3 GB/s, far above what an SSH window lets through)."""
IDLE_WAIT = 1.0
"""The longest single wait of the relay's thread: no wait is unbounded."""
JOIN_TIMEOUT = 5.0

_RESET = None
"""Held in place of data: the sending side was reset; the receiving side is reset."""
_EOF = b""


class _Flow:
    """One direction of a link: what its source sent, held until due, for its sink."""

    def __init__(self) -> None:
        self.held: deque[tuple[float, bytes | memoryview | None]] = deque()
        self.size = 0
        self.reading = True  # the source may still send
        self.blocked = False  # the sink's buffer is full: waiting until it is writable


class _End:
    """One socket of a link: the flow it feeds and the flow it drains."""

    def __init__(self, sock: socket.socket, link: _Link, out: _Flow, into: _Flow) -> None:
        self.sock, self.link, self.out, self.into = sock, link, out, into
        self.mask = 0


class _Link:
    """An accepted connection and its connection to the target."""

    def __init__(self, client: socket.socket, target: int, connect_at: float) -> None:
        self.up, self.down = _Flow(), _Flow()
        self.client = _End(client, self, self.up, self.down)
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setblocking(False)
        server.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server = _End(server, self, self.down, self.up)
        self.target = target
        self.connect_at: float | None = connect_at  # None once the connect has begun
        self.connected = False
        self.refused = False
        self.eofs = 0  # EOFs delivered: at 2 the link is done


class DelayRelay:
    """Forward 127.0.0.1 ports to ``targets`` (ports on 127.0.0.1) with ``delay``
    seconds each way.  A context manager; ``close()`` stops it and closes every socket."""

    def __init__(self, targets: Iterable[int], delay: float) -> None:
        if delay < 0:
            raise ValueError(f"delay must be >= 0 seconds, not {delay!r}")
        self.delay = float(delay)
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._listeners: list[socket.socket] = []
        self.ports: dict[int, int] = {}
        try:
            for target in dict.fromkeys(targets):
                listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                self._listeners.append(listener)
                listener.bind((HOST, 0))
                listener.listen(128)
                listener.setblocking(False)
                self._selector.register(listener, selectors.EVENT_READ, target)
                self.ports[target] = listener.getsockname()[1]
        except BaseException:
            self._close_all()
            raise
        self._links: set[_Link] = set()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="delay-relay", daemon=True)

    def __enter__(self) -> DelayRelay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> DelayRelay:
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def links(self) -> int:
        """Connections being relayed now."""
        return len(self._links)

    def close(self, timeout: float = JOIN_TIMEOUT) -> None:
        """Stop relaying: every connection is closed (its two ends see EOF), the
        listeners too, and the thread is joined (for at most ``timeout`` seconds)."""
        self._closing = True
        if self._thread.is_alive():
            try:
                self._wake_w.send(b"x")
            except OSError:
                pass
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise RuntimeError(f"the delay relay's thread did not stop in {timeout:g} s")
        else:
            self._close_all()

    # -- the thread ---------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._closing:
                self._fire(time.monotonic())
                due = self._next_due()
                wait = IDLE_WAIT if due is None else min(IDLE_WAIT, due - time.monotonic())
                for key, mask in self._events(max(wait, 0)):
                    self._event(key, mask)
        finally:
            self._close_all()

    def _events(self, wait: float) -> list[tuple[selectors.SelectorKey, int]]:
        """What is ready within ``wait`` seconds, woken to the microsecond: epoll's own
        timeout is in whole milliseconds, rounded up, so the wait is a select() on the
        epoll descriptor (readable when anything registered is ready), when it can be."""
        epoll = self._selector.fileno()
        if wait > 0 and 0 <= epoll < FD_SETSIZE:
            select.select([epoll], [], [], wait)
            wait = 0
        return self._selector.select(wait)

    def _close_all(self) -> None:
        for link in list(getattr(self, "_links", ())):
            self._drop(link, reset=False)
        for sock in [*self._listeners, self._wake_r, self._wake_w]:
            sock.close()
        self._selector.close()

    def _event(self, key: selectors.SelectorKey, mask: int) -> None:
        data = key.data
        if data is None:  # woken by close()
            try:
                self._wake_r.recv(64)
            except OSError:
                pass
        elif isinstance(data, int):
            self._accept(key.fileobj, data)  # type: ignore[arg-type]
        else:
            end: _End = data
            if end.link not in self._links:
                return
            if mask & selectors.EVENT_WRITE:
                self._writable(end)
            if mask & selectors.EVENT_READ and end.link in self._links:
                self._read(end)

    def _accept(self, listener: socket.socket, target: int) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # out of files, or the peer left already: the rest wait
                return
            client.setblocking(False)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            link = _Link(client, target, time.monotonic() + self.delay)
            self._links.add(link)
            self._interest(link.client)

    def _read(self, end: _End) -> None:
        flow = end.out
        now = time.monotonic()
        try:
            data = end.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = None  # reset (or any failure): the other side is reset in turn
        if data:
            flow.held.append((now, data))
            flow.size += len(data)
        else:
            flow.held.append((now, _EOF if data == b"" else _RESET))
            flow.reading = False
        self._interest(end)

    def _writable(self, end: _End) -> None:
        link = end.link
        if end is link.server and not link.connected:
            if end.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                self._refused(link)
            else:
                link.connected = True
                self._interest(end)
            return
        end.into.blocked = False
        self._interest(end)

    def _next_due(self) -> float | None:
        due = None
        for link in self._links:
            if link.connect_at is not None:
                due = link.connect_at if due is None else min(due, link.connect_at)
            for flow, ready in ((link.up, link.connected), (link.down, True)):
                if flow.held and ready and not flow.blocked:
                    at = flow.held[0][0] + self.delay
                    due = at if due is None else min(due, at)
        return due

    def _fire(self, now: float) -> None:
        for link in list(self._links):
            if link.connect_at is not None and link.connect_at <= now:
                self._connect(link)
            if link in self._links and link.connected:
                self._deliver(link.up, link.server, now)
            if link in self._links:
                self._deliver(link.down, link.client, now)

    def _connect(self, link: _Link) -> None:
        link.connect_at = None
        code = link.server.sock.connect_ex((HOST, link.target))
        if code not in (0, errno.EINPROGRESS):
            self._refused(link)
            return
        self._interest(link.server)  # writable once connected

    def _refused(self, link: _Link) -> None:
        """The target refused: the client hears a reset, a delay later."""
        link.refused = True
        link.up.held.clear()
        link.up.size = 0
        link.up.reading = False
        link.down.held.append((time.monotonic(), _RESET))
        link.down.reading = False
        self._interest(link.server)
        self._interest(link.client)

    def _deliver(self, flow: _Flow, sink: _End, now: float) -> None:
        """Write what is due from ``flow`` to ``sink``, in order, until its buffer fills."""
        while flow.held and not flow.blocked and flow.held[0][0] + self.delay <= now:
            at, data = flow.held[0]
            if data is _RESET:
                self._drop(sink.link, reset=True)
                return
            if data == _EOF:
                flow.held.popleft()
                self._eof(sink)
                return
            try:
                sent = sink.sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:  # the sink was reset: its peer hears it, a delay later
                flow.held.clear()
                flow.size = 0
                back = sink.out
                back.held.append((now, _RESET))
                back.reading = False
                self._interest(sink)
                return
            flow.size -= sent
            if sent < len(data):
                flow.held[0] = (at, memoryview(data)[sent:])
                flow.blocked = True
            else:
                flow.held.popleft()
            self._interest(sink)
            src = sink.link.client if sink is sink.link.server else sink.link.server
            self._interest(src)  # below the held limit again, perhaps

    def _eof(self, sink: _End) -> None:
        link = sink.link
        link.eofs += 1
        try:
            sink.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        if link.eofs == 2:
            self._drop(link, reset=False)

    def _interest(self, end: _End) -> None:
        """Register ``end`` for what the relay waits for on it now."""
        link = end.link
        if link not in self._links:
            return
        mask = 0
        if link.refused and end is link.server:
            pass
        elif end is link.client or link.connected:
            if end.out.reading and end.out.size < HELD_LIMIT:
                mask |= selectors.EVENT_READ
            if end.into.blocked:
                mask |= selectors.EVENT_WRITE
        elif link.connect_at is None:  # connecting
            mask |= selectors.EVENT_WRITE
        if mask == end.mask:
            return
        if end.mask == 0:
            self._selector.register(end.sock, mask, end)
        elif mask == 0:
            self._selector.unregister(end.sock)
        else:
            self._selector.modify(end.sock, mask, end)
        end.mask = mask

    def _drop(self, link: _Link, *, reset: bool) -> None:
        """Close both ends of ``link``; with ``reset``, as a reset (RST), not an EOF."""
        self._links.discard(link)
        for end in (link.client, link.server):
            if end.mask:
                self._selector.unregister(end.sock)
                end.mask = 0
            if reset:
                try:  # linger 0: close sends RST
                    end.sock.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                except OSError:
                    pass
            end.sock.close()
