"""The SSH layer stubbed below the node, for the machinery figure of hundreds of nodes.

Only paramiko's side is a stand-in: ``StubTransport`` (the connection) and
``StubChannel`` (a remote REPL that answers at once).  ``StubSession`` is the real
``Session`` whose ``connect`` skips the socket and the handshake but still looks its
host up in known_hosts, checks the host key and loads the key it authenticates with.
Host names go through the real ssh_config reading; ``make_nodes``, ``Node``, ``Rrepl``
and its record stream, ``distribute`` and ``close`` are the product's own code.

The stub REPL answers only what ``distribute`` sends (each expression's value is 3);
anything else gets an error record.  Never used by the tests (DESIGN.md: tests speak to
real sshd and real Guile).
"""

from __future__ import annotations

import itertools
import statistics
import threading
import time
from pathlib import Path

import paramiko

from sshdist_kernel import distribute, make_nodes
from sshdist_kernel.knownhosts import read_host_keys
from sshdist_kernel.session import Session
from sshdist_kernel.sshauth import authenticate
from sshdist_kernel.sshconfig import resolve_options

_HELLO = b"\0sshdist-rrepl\0"
_pids = itertools.count(10_000)


def _record(tag: bytes, payload: bytes) -> bytes:
    return tag + b"%d\n" % len(payload) + payload


class StubChannel:
    """An exec channel whose remote command is a REPL that answers each request as it
    is sent, with the records the loop would write."""

    def __init__(self) -> None:
        self._out = bytearray()
        self._in = bytearray()
        self._lock = threading.Lock()
        self.closed = False
        self.status_event = threading.Event()
        self._timeout: float | None = None

    def exec_command(self, command: str) -> None:
        hello = b"%d\n3.0.stub\n0" % next(_pids)
        self._out += _HELLO + _record(b"h", hello)

    def settimeout(self, timeout: float | None) -> None:
        self._timeout = timeout

    def recv(self, size: int) -> bytes:
        with self._lock:
            if self.closed:
                return b""
            if self._out:
                data = bytes(self._out[:size])
                del self._out[:size]
                return data
        # Nothing to read only if the client waits for what no request asked: wait as
        # a socket would, so such a bug shows as a timeout rather than a busy loop.
        time.sleep(self._timeout or 0.25)
        raise TimeoutError("the stub REPL has nothing to say")

    def recv_stderr_ready(self) -> bool:
        return False

    def send(self, data: bytes) -> int:
        with self._lock:
            if self.closed:
                raise OSError("the stub channel is closed")
            self._in += data
            self._answer()
        return len(data)

    def sendall(self, data: bytes) -> None:
        self.send(data)

    def _answer(self) -> None:
        """Answer every whole request in the input, in order."""
        while True:
            newline = self._in.find(b"\n")
            if newline < 0:
                return
            tag, length = self._in[:1], int(self._in[1:newline])
            end = newline + 1 + length
            if len(self._in) < end:
                return
            payload = bytes(self._in[newline + 1 : end])
            del self._in[:end]
            if tag == b"i":
                self._out += _record(b"i", b"")
            elif tag in (b"e", b"q"):
                self._out += _record(b"g", b"") + self._evaluate(payload.decode())
                self._out += _record(b"p", b"(guile-user)\nscheme\n0")
            # a (attachment), w (input allowed), s (input): nothing to answer

    def _evaluate(self, source: str) -> bytes:
        if not source.startswith("(map primitive-eval (quote "):
            return _record(b"x", b"stub\nthe stub REPL answers distribute's jobs only")
        values = " ".join(["3"] * source.count("(begin "))
        return _record(b"v", f"0\n({values})".encode()) + _record(b"f", b"")

    def recv_exit_status(self) -> int:
        return 0

    def close(self) -> None:
        with self._lock:
            self.closed = True
        self.status_event.set()


class StubTransport:
    """What ``Session`` asks of a ``paramiko.Transport``, connected at once."""

    def __init__(self, host_key: paramiko.PKey) -> None:
        self._host_key = host_key
        self._active = True
        self._authenticated = False

    def get_remote_server_key(self) -> paramiko.PKey:
        return self._host_key

    def auth_none(self, user: str) -> list[str]:
        raise paramiko.BadAuthenticationType("publickey only", ["publickey"])

    def auth_publickey(self, user: str, key: paramiko.PKey) -> list[str]:
        self._authenticated = True
        return []

    def is_authenticated(self) -> bool:
        return self._authenticated

    def is_active(self) -> bool:
        return self._active

    def open_session(self, timeout: float | None = None) -> StubChannel:
        return StubChannel()

    def global_request(self, kind: str, data: object = None, wait: bool = True) -> None:
        return None

    def set_keepalive(self, interval: int) -> None:
        pass

    def close(self) -> None:
        self._active = False


class StubSession(Session):
    """A ``Session`` with no network under it.  It connects on first use, not when made,
    so the connecting happens on ``make_nodes``' threads, as it does for a host name."""

    host_key: paramiko.PKey

    def __init__(self, options: object, host_key: paramiko.PKey) -> None:
        self.host_key = host_key
        self._made = False
        super().__init__(options)  # type: ignore[arg-type]
        self._made = True

    def connect(self, timeout: float | None = None) -> None:
        """``Session.connect`` without the socket and the handshake."""
        if not self._made:  # Session.__init__ connects; the node does it here
            return
        self.close()
        o = self.options
        known = read_host_keys(o.known_hosts, o.known_hosts_name)
        transport = StubTransport(self.host_key)
        self._check_host_key(transport.get_remote_server_key(), known)
        authenticate(transport, o)  # type: ignore[arg-type]
        self.transport = transport  # type: ignore[assignment]


class StubCluster:
    """``count`` hosts named ``stub1`` ... as a cluster's files name them: one
    ``Host stub*`` block in ssh_config, a key of theirs in known_hosts for each, and
    the user's key file, all under ``where``."""

    def __init__(self, count: int, where: str | Path) -> None:
        where = Path(where)
        where.mkdir(parents=True, exist_ok=True)
        self.names = [f"stub{i}" for i in range(1, count + 1)]
        self.host_key = paramiko.ECDSAKey.generate()
        identity = where / "id_ecdsa"
        paramiko.ECDSAKey.generate().write_private_key_file(str(identity))
        self.known_hosts = where / "known_hosts"
        kind, blob = self.host_key.get_name(), self.host_key.get_base64()
        self.known_hosts.write_text("".join(f"{n} {kind} {blob}\n" for n in self.names))
        self.ssh_config = where / "ssh_config"
        self.ssh_config.write_text(
            "Host stub*\n"
            "  User stub\n"
            f"  IdentityFile {identity}\n"
            "  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {self.known_hosts}\n"
        )

    def sessions(self) -> list[StubSession]:
        """A session a host, options read from the files as ``make_session`` reads them."""
        return [
            StubSession(
                resolve_options(name, ssh_config=self.ssh_config, allow_agent=False),
                self.host_key,
            )
            for name in self.names
        ]


def make_distribute_close(cluster: StubCluster, timeout: float = 120.0) -> None:
    """Make a node on each host, ``distribute`` one ``(+ 1 2)`` a node, close them.

    One job a node (``chunksize="per-node"``, the chapter's ``assign-eval``): with
    answers this fast the balancing scheduler would hand the work to a few nodes, and
    the figure is about what each node costs."""
    nodes = make_nodes(cluster.sessions())
    try:
        count = len(cluster.names)
        exprs = ["(+ 1 2)"] * count
        if distribute(nodes, *exprs, chunksize="per-node", timeout=timeout) != (3,) * count:
            raise SystemExit("distribute on stub-SSH nodes gave wrong results")
    finally:
        for node in nodes:
            node.close()


def machinery(where: str | Path, repeat: int = 5) -> dict[str, float]:
    """``make_distribute_close`` on 64 and on 512 hosts, after one warm-up run each, then
    ``repeat`` rounds alternating the two so both see the same noise; the medians per
    node in microseconds, of wall-clock time and of this process's CPU time (all its
    threads), and 512's against 64's."""
    counts = (64, 512)
    clusters = {n: StubCluster(n, Path(where) / f"stub{n}") for n in counts}
    for cluster in clusters.values():
        make_distribute_close(cluster)
    wall: dict[int, list[float]] = {n: [] for n in counts}
    cpu: dict[int, list[float]] = {n: [] for n in counts}
    for _ in range(repeat):
        for n, cluster in clusters.items():
            t, c = time.perf_counter(), time.process_time()
            make_distribute_close(cluster)
            wall[n].append((time.perf_counter() - t) * 1e6 / n)
            cpu[n].append((time.process_time() - c) * 1e6 / n)
    figures = {}
    for n in counts:
        figures[f"stub_make_distribute_close_us_per_node_{n}"] = statistics.median(wall[n])
        figures[f"stub_make_distribute_close_cpu_us_per_node_{n}"] = statistics.median(cpu[n])
    for kind in ("", "cpu_"):
        per_node = f"stub_make_distribute_close_{kind}us_per_node"
        figures[f"stub_machinery_512_vs_64_{kind}ratio"] = (
            figures[f"{per_node}_512"] / figures[f"{per_node}_64"]
        )
    return figures
