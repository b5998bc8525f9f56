"""The delaying TCP relay of the latency bench: bytes intact and in order both ways,
EOF and resets passed on, a clean stop with connections open, and a real node (SSH and
Guile) reached through it with host keys checked.  No timing is asserted but one lower
bound: a round trip takes at least twice the delay."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sshdist_kernel import HostKeyError, dist_map, make_node, with_ssh
from sshdist_kernel.delayrelay import DelayRelay
from sshdist_kernel.localnodes import LocalNodes
from sshdist_kernel.relayprocess import RelayProcess

from .conftest import wait_until

DELAY = 0.005
TIMEOUT = 30.0


class Server:
    """A TCP server on 127.0.0.1 that runs ``serve(conn)`` for each connection, each on
    a thread of its own; it keeps the connections it accepted."""

    def __init__(self, serve: Callable[[socket.socket], None]) -> None:
        self.serve = serve
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []
        self.closing = False  # from then on a connection's failure is close()'s doing
        self.accepting = threading.Thread(target=self._accept, daemon=True)
        self.accepting.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.settimeout(TIMEOUT)
            self.conns.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            self.serve(conn)
        except BaseException as e:  # noqa: BLE001 - reported by close()
            if not self.closing:  # close()'s shutdown makes the echo's own fail (ENOTCONN)
                self.errors.append(e)

    def close(self) -> None:
        # shutdown wakes a thread blocked in accept or recv; close alone would not
        self.closing = True
        for sock in [self.sock, *self.conns]:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        for thread in self.threads:
            thread.join(TIMEOUT)
        self.accepting.join(TIMEOUT)


def echo(conn: socket.socket) -> None:
    """Send back everything; on EOF, half-close in turn."""
    while data := conn.recv(1 << 16):
        conn.sendall(data)
    conn.shutdown(socket.SHUT_WR)


@pytest.fixture
def echo_server() -> Iterator[Server]:
    server = Server(echo)
    yield server
    server.close()
    assert not server.errors


@pytest.fixture
def relay(echo_server: Server) -> Iterator[DelayRelay]:
    with DelayRelay([echo_server.port], DELAY) as r:
        yield r
    assert not r.running


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def receive_all(sock: socket.socket) -> bytes:
    """Everything until EOF."""
    got = bytearray()
    while data := sock.recv(1 << 20):
        got += data
    return bytes(got)


def test_large_data_arrives_intact_and_in_order_both_ways(
    relay: DelayRelay, echo_server: Server
) -> None:
    data = os.urandom(20 * 1024 * 1024)
    with connect(relay.ports[echo_server.port]) as sock:
        sending = threading.Thread(target=sock.sendall, args=(data,))
        sending.start()
        got = bytearray()
        while len(got) < len(data):
            chunk = sock.recv(1 << 20)
            assert chunk, "the relay closed the connection early"
            got += chunk
        sending.join(TIMEOUT)
        assert bytes(got) == data


def test_many_small_writes_keep_their_order(relay: DelayRelay, echo_server: Server) -> None:
    """Thousands of writes of a few bytes, each numbered: they come back in order."""
    numbers = range(20_000)
    with connect(relay.ports[echo_server.port]) as sock:

        def send() -> None:
            for i in numbers:
                sock.sendall(struct.pack("!I", i))
            sock.shutdown(socket.SHUT_WR)

        sending = threading.Thread(target=send)
        sending.start()
        got = receive_all(sock)
        sending.join(TIMEOUT)
    assert list(struct.unpack(f"!{len(numbers)}I", got)) == list(numbers)


def test_many_connections_at_once(relay: DelayRelay, echo_server: Server) -> None:
    socks = [connect(relay.ports[echo_server.port]) for _ in range(32)]
    try:
        for i, sock in enumerate(socks):
            sock.sendall(f"connection {i}\n".encode() * 1000)
            sock.shutdown(socket.SHUT_WR)
        for i, sock in enumerate(socks):
            assert receive_all(sock) == f"connection {i}\n".encode() * 1000
    finally:
        for sock in socks:
            sock.close()
    wait_until(lambda: relay.links == 0, what="the relay to drop the closed links")


def test_several_targets_each_reached_at_its_own_port() -> None:
    servers = [Server(lambda c, i=i: (c.sendall(b"server %d" % i), c.close())) for i in range(3)]
    try:
        with DelayRelay([s.port for s in servers], DELAY) as relay:
            for i, server in enumerate(servers):
                with connect(relay.ports[server.port]) as sock:
                    assert receive_all(sock) == b"server %d" % i
    finally:
        for server in servers:
            server.close()


def test_client_eof_reaches_the_server_after_the_data(
    relay: DelayRelay, echo_server: Server
) -> None:
    """A half-close: the client stops sending, and still reads the server's answer."""
    with connect(relay.ports[echo_server.port]) as sock:
        sock.sendall(b"last words")
        sock.shutdown(socket.SHUT_WR)
        assert receive_all(sock) == b"last words"  # the echo's own EOF came back too


def test_server_close_reaches_the_client_after_the_data() -> None:
    server = Server(lambda c: (c.sendall(b"bye" * 100_000), c.close()))
    try:
        with DelayRelay([server.port], DELAY) as relay, connect(relay.ports[server.port]) as sock:
            assert receive_all(sock) == b"bye" * 100_000
    finally:
        server.close()


def _reset(conn: socket.socket) -> None:
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def test_a_server_reset_reaches_the_client() -> None:
    def reset_after_hello(conn: socket.socket) -> None:
        conn.recv(5)
        _reset(conn)

    server = Server(reset_after_hello)
    try:
        with DelayRelay([server.port], DELAY) as relay, connect(relay.ports[server.port]) as sock:
            sock.sendall(b"hello")
            with pytest.raises(ConnectionResetError):
                receive_all(sock)
    finally:
        server.close()


def test_a_client_reset_reaches_the_server() -> None:
    outcome: list[object] = []

    def read_until_end(conn: socket.socket) -> None:
        try:
            outcome.append(receive_all(conn))
        except ConnectionResetError as e:
            outcome.append(e)

    server = Server(read_until_end)
    try:
        with DelayRelay([server.port], DELAY) as relay:
            sock = connect(relay.ports[server.port])
            sock.sendall(b"hello")
            wait_until(lambda: server.conns, what="the server's connection")
            _reset(sock)
            wait_until(lambda: outcome, timeout=TIMEOUT, what="the server to see the end")
        assert isinstance(outcome[0], ConnectionResetError)
    finally:
        server.close()


def test_a_refused_target_resets_the_client() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # bound, never listening: connections are refused
        with DelayRelay([port], DELAY) as relay, connect(relay.ports[port]) as sock:
            sock.sendall(b"anyone?")
            with pytest.raises(ConnectionResetError):
                receive_all(sock)


def test_close_with_connections_open_stops_cleanly(echo_server: Server) -> None:
    relay = DelayRelay([echo_server.port], DELAY).start()
    port = relay.ports[echo_server.port]
    socks = [connect(port) for _ in range(4)]
    try:
        for sock in socks:
            sock.sendall(b"ping")
            assert sock.recv(4) == b"ping"
        socks[0].sendall(b"in flight" * 10_000)  # held in the relay as it closes
        relay.close()
        assert not relay.running
        assert relay.links == 0
        for sock in socks:
            try:
                receive_all(sock)  # the relay's end closed: EOF, after what got through
            except ConnectionResetError:
                pass
        with pytest.raises(ConnectionRefusedError):
            connect(port).close()
        relay.close()  # twice is fine
    finally:
        for sock in socks:
            sock.close()


def test_a_round_trip_takes_at_least_twice_the_delay(
    relay: DelayRelay, echo_server: Server
) -> None:
    with connect(relay.ports[echo_server.port]) as sock:
        for _ in range(3):
            start = time.monotonic()
            sock.sendall(b"x")
            assert sock.recv(1) == b"x"
            assert time.monotonic() - start >= 2 * DELAY


def test_relay_process_relays_and_ends_on_close(echo_server: Server) -> None:
    relay = RelayProcess([echo_server.port], DELAY)
    try:
        with connect(relay.ports[echo_server.port]) as sock:
            sock.sendall(b"from another process")
            sock.shutdown(socket.SHUT_WR)
            assert receive_all(sock) == b"from another process"
    finally:
        relay.close()
    assert relay._proc.returncode == 0


def test_a_node_through_the_relay(local_nodes: LocalNodes, tmp_path: Path) -> None:
    """SSH and the node's Guile REPL through the relay, by the nodes' own names."""
    with DelayRelay([n.port for n in local_nodes.nodes], DELAY) as relay:
        config = local_nodes.config_through(relay.ports, tmp_path)
        node = make_node("node1", ssh_config=str(config))
        try:
            assert with_ssh(node, "(+ 1 2)").value == 3
            assert dist_map([node], "(lambda (x) (* x x))", range(1000)) == [
                x * x for x in range(1000)
            ]
        finally:
            node.close()


def test_host_keys_are_checked_through_the_relay(local_nodes: LocalNodes, tmp_path: Path) -> None:
    """node1's name and key at a relay port that leads to node2: refused."""
    node1, node2 = local_nodes.nodes[:2]
    with DelayRelay([node2.port], DELAY) as relay:
        config = local_nodes.config_through({node1.port: relay.ports[node2.port]}, tmp_path)
        with pytest.raises(HostKeyError):
            make_node("node1", ssh_config=str(config)).close()
