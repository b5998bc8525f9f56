"""Jump hosts shared, and handshakes paced: many nodes behind one login node make one
connection to it, and a server that drops connections before its banner (sshd's
MaxStartups) is tried again, then named as the likely cause."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from sshdist_kernel import ConnectError, make_nodes, make_session, with_ssh
from sshdist_kernel.localnodes import LocalNodes, established_to
from sshdist_kernel.session import JUMPS

from .conftest import wait_until


def _behind(local_nodes: LocalNodes, tmp_path: Path, jump: str, count: int) -> Path:
    """ssh_config with ``b1..bN``: node2's and node3's sshd reached through ``jump``."""
    blocks = []
    for i in range(1, count + 1):
        target = local_nodes.nodes[1 + i % 2]
        blocks.append(
            f"Host b{i}\n    HostName 127.0.0.1\n    Port {target.port}\n"
            f"    ProxyJump {jump}\n    User {local_nodes.user}\n"
            f"    IdentityFile {local_nodes.identity}\n    IdentitiesOnly yes\n"
            f"    UserKnownHostsFile {local_nodes.known_hosts}\n"
        )
    config = tmp_path / "ssh_config"
    config.write_text("\n".join(blocks) + "\n" + local_nodes.ssh_config.read_text())
    return config


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[LocalNodes]:
    """A jump host of this test's own: its sshd's connections are the test's alone."""
    made = LocalNodes.up(1, tmp_path / "gate")
    yield made
    made.down()


def test_nodes_behind_one_jump_host_share_one_connection(
    local_nodes: LocalNodes, gate: LocalNodes, tmp_path: Path
) -> None:
    jump_port = gate.nodes[0].port
    config = _behind(local_nodes, tmp_path, "gate", 12)
    config.write_text(
        config.read_text() + "\n" + gate.ssh_config.read_text().replace("node1", "gate")
    )
    nodes = make_nodes([f"b{i}" for i in range(1, 13)], ssh_config=str(config))
    try:
        assert established_to(jump_port) == 1
        jumps = {id(n.session._jump) for n in nodes}
        assert len(jumps) == 1
        assert [with_ssh(n, "(+ 1 2)").value for n in nodes] == [3] * 12
        nodes[0].close()  # one node gone: the others keep the jump connection
        assert with_ssh(nodes[1], "(* 6 7)").value == 42
        assert established_to(jump_port) == 1
    finally:
        for n in nodes:
            n.close()
    # The last node closed the jump connection.
    wait_until(lambda: established_to(jump_port) == 0, 5, "the jump connection to close")


def test_a_dead_jump_connection_is_made_again_for_the_next_call(
    local_nodes: LocalNodes, tmp_path: Path
) -> None:
    config = _behind(local_nodes, tmp_path, "node1", 2)
    nodes = make_nodes(["b1", "b2"], ssh_config=str(config))
    try:
        nodes[0].session._jump.transport.close()  # the login connection drops
        # The next call on each node reconnects through one new jump connection.
        assert [with_ssh(n, "(+ 1 2)").value for n in nodes] == [3, 3]
        assert nodes[0].session._jump is nodes[1].session._jump
        assert nodes[0].session._jump.is_connected()
    finally:
        for n in nodes:
            n.close()


def test_a_jump_host_that_fails_fails_every_node_behind_it_with_its_reason(
    local_nodes: LocalNodes, tmp_path: Path
) -> None:
    config = _behind(local_nodes, tmp_path, "nosuchjump", 4)
    config.write_text(
        config.read_text() + "\nHost nosuchjump\n    HostName 127.0.0.1\n    Port 1\n"
    )
    made = make_nodes([f"b{i}" for i in range(1, 5)], ssh_config=str(config), on_error="skip")
    assert len(made) == 0 and len(made.failed) == 4
    assert all("refused the connection" in why for why in made.failed.values())
    assert not JUMPS._entries  # nothing kept for a jump host that never came up


@contextmanager
def _dropping_relay(
    target_port: int, drop_first: int, then_silent: bool = False
) -> Iterator[tuple[int, list[int]]]:
    """A TCP relay on 127.0.0.1 to ``target_port`` that resets its first
    ``drop_first`` connections before a byte is sent, as sshd past MaxStartups does;
    ``then_silent``: the later ones are held open and nothing is said on them."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    accepted = [0]
    stop = threading.Event()
    held: list[socket.socket] = []

    def pump(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            accepted[0] += 1
            if accepted[0] <= drop_first:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()
                continue
            if then_silent:
                held.append(conn)
                continue
            upstream = socket.create_connection(("127.0.0.1", target_port))
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=pump, args=(a, b), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], accepted
    finally:
        stop.set()
        thread.join(5)
        listener.close()
        for conn in held:
            conn.close()


def _via(local_nodes: LocalNodes, tmp_path: Path, port: int) -> Path:
    config = tmp_path / "relay_config"
    config.write_text(
        f"Host relayed\n    HostName 127.0.0.1\n    Port {port}\n    User {local_nodes.user}\n"
        f"    IdentityFile {local_nodes.identity}\n    IdentitiesOnly yes\n"
        f"    UserKnownHostsFile {tmp_path / 'known_hosts'}\n"
    )
    key = (local_nodes.dir / "node1" / "ssh_host_ed25519_key.pub").read_text().split()
    (tmp_path / "known_hosts").write_text(f"[127.0.0.1]:{port} {key[0]} {key[1]}\n")
    return config


@pytest.mark.parametrize("transport", ["paramiko", "openssh"])
def test_time_running_out_after_drops_names_the_drops(
    local_nodes: LocalNodes, tmp_path: Path, transport: str
) -> None:
    """Dropped before the banner, then a try that hears nothing until the time is up
    (what a busy sshd past MaxStartups can do): the error says the server dropped the
    connection, not only that the time ran out."""
    relay = _dropping_relay(local_nodes.nodes[0].port, drop_first=1, then_silent=True)
    with relay as (port, accepted):
        config = _via(local_nodes, tmp_path, port)
        with pytest.raises(ConnectError, match=r"before the SSH banner 1 time\(s\) in 1 s"):
            make_session("relayed", ssh_config=str(config), transport=transport, timeout=1)
        assert accepted[0] == 2


def test_a_connection_dropped_before_the_banner_is_tried_again(
    local_nodes: LocalNodes, tmp_path: Path
) -> None:
    with _dropping_relay(local_nodes.nodes[0].port, drop_first=3) as (port, accepted):
        config = _via(local_nodes, tmp_path, port)
        with make_session("relayed", ssh_config=str(config)) as session:
            assert session.run("echo up").stdout == "up\n"
        assert accepted[0] == 4


def test_a_server_that_always_drops_is_named_as_maxstartups_not_as_not_ssh(
    local_nodes: LocalNodes, tmp_path: Path
) -> None:
    with _dropping_relay(local_nodes.nodes[0].port, drop_first=10**6) as (port, accepted):
        config = _via(local_nodes, tmp_path, port)
        started = time.monotonic()
        with pytest.raises(ConnectError) as caught:
            make_session("relayed", ssh_config=str(config), timeout=2)
        took = time.monotonic() - started
    message = str(caught.value)
    assert "closed the connection before the SSH banner" in message
    assert "MaxStartups" in message and "does not speak SSH" not in message
    assert took < 2 + 0.5 and accepted[0] >= 4
