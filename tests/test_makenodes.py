"""make_nodes on many hosts: the bounded pool, all-or-nothing, skipping dead hosts, and
known_hosts read once, against the real local nodes."""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from sshdist_kernel import (
    ConnectError,
    MadeNodes,
    Node,
    SshConfigError,
    knownhosts,
    make_nodes,
    node,
    sshfiles,
)
from sshdist_kernel.localnodes import LocalNodes, _free_port
from sshdist_kernel.sshconfig import resolve_options


def _close(nodes: list[Node]) -> None:
    for n in nodes:
        n.close()


@pytest.fixture
def node3_stopped(local_nodes: LocalNodes) -> Iterator[None]:
    local_nodes.stop("node3")
    yield
    local_nodes.start("node3")


def test_skip_returns_the_nodes_that_came_up_in_order_and_reports_the_rest(
    ssh_config: str, node3_stopped: None
) -> None:
    closed = f"root@127.0.0.1:{_free_port()}"
    started = time.monotonic()
    made = make_nodes(["node2", "node3", closed, "node1"], ssh_config=ssh_config, on_error="skip")
    took = time.monotonic() - started
    try:
        assert isinstance(made, MadeNodes)
        assert [n.name for n in made] == ["node2", "node1"]
        assert all(n.eval("(+ 1 2)").value == 3 for n in made)
        assert list(made.failed) == ["node3", closed]
        assert "refused the connection" in made.failed["node3"]
        assert "refused the connection" in made.failed[closed]
        assert made.summary() == f"2 of 4 nodes up; 2 host(s) failed: node3, {closed}"
        assert "failed" in repr(made)
        assert took < 5, f"refused hosts should fail at once, took {took:.1f} s"
    finally:
        _close(made)


def test_a_broken_ssh_config_is_an_error_even_when_skipping(ssh_config: str, tmp_path) -> None:
    # Every host would fail alike: "0 of 3 nodes up" and the same line 3 times says less.
    broken = tmp_path / "config"
    broken.write_text(f"Include {ssh_config}\nMatch tagged x\n  User nobody\n")
    with pytest.raises(SshConfigError, match="Match tagged"):
        make_nodes(["node1", "node2", "node3"], ssh_config=str(broken), on_error="skip")


def test_raise_is_all_or_nothing(ssh_config: str, node3_stopped: None, monkeypatch) -> None:
    made: list[Node] = []
    real = node.make_node

    def keep(*args, **kwargs) -> Node:
        n = real(*args, **kwargs)
        made.append(n)
        return n

    monkeypatch.setattr(node, "make_node", keep)
    with pytest.raises(ConnectError, match=r"node3 .* refused the connection"):
        make_nodes("node[1-3]", ssh_config=ssh_config)
    assert made and all(n.session.transport is None for n in made)  # closed again


def test_a_silent_host_is_bounded_by_the_connect_timeout(ssh_config: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never says a word
        host = f"root@127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        made = make_nodes(["node1", host], ssh_config=ssh_config, on_error="skip", timeout=1.5)
        took = time.monotonic() - started
    try:
        assert [n.name for n in made] == ["node1"]
        assert "accepted a TCP connection" in made.failed[host]
        assert "speak SSH" in made.failed[host]
        assert took < 6
    finally:
        _close(made)


def test_at_most_max_connecting_handshakes_at_once(ssh_config: str, monkeypatch) -> None:
    lock = threading.Lock()
    calls = itertools.count()
    now = [0, 0]  # in flight, most seen at once
    first_two = threading.Barrier(2, timeout=10)  # they must run at the same time
    real = node.make_node

    def counted(*args, **kwargs) -> Node:
        with lock:
            now[0] += 1
            now[1] = max(now[0], now[1])
            call = next(calls)
        try:
            if call < 2:
                first_two.wait()
            return real(*args, **kwargs)
        finally:
            with lock:
                now[0] -= 1

    monkeypatch.setattr(node, "make_node", counted)
    made = make_nodes(["node[1-3]", "node[1-3]"], ssh_config=ssh_config, max_connecting=2)
    try:
        assert [n.name for n in made] == ["node1", "node2", "node3"] * 2
        assert now[1] == 2
    finally:
        _close(made)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_max_connecting_must_be_a_count(ssh_config: str, bad: object) -> None:
    with pytest.raises(ValueError, match="max_connecting"):
        make_nodes("node1", ssh_config=ssh_config, max_connecting=bad)


def test_on_error_is_raise_or_skip(ssh_config: str) -> None:
    with pytest.raises(ValueError, match="on_error"):
        make_nodes("node1", ssh_config=ssh_config, on_error="ignore")


def test_known_hosts_is_parsed_once_for_all_the_nodes(ssh_config: str, monkeypatch) -> None:
    parses = []
    parse = knownhosts._parse
    monkeypatch.setattr(knownhosts, "_parse", lambda *a: parses.append(a) or parse(*a))
    monkeypatch.setattr(sshfiles, "_parsed", {})
    made = make_nodes("node[1-3]", ssh_config=ssh_config)
    _close(made)
    files = [p for p in resolve_options("node1", ssh_config=ssh_config).known_hosts]
    assert len(parses) == len([p for p in files if os.path.isfile(p)])


def test_ctrl_c_while_the_workers_start_answers_their_questions_nobody(monkeypatch) -> None:
    """A Ctrl-C before the relay is served (while the threads start) must still tell a
    worker waiting on a question that nobody answers: it hung, holding its jump host."""
    from sshdist_kernel import makenodes
    from sshdist_kernel.prompts import PromptRelay, PromptUnavailable

    relay = PromptRelay(lambda text, echo: "code")
    outcomes: list[BaseException] = []
    asked = threading.Event()

    def make(host: str) -> object:
        try:
            asked.set()
            return relay.ask("code: ", False)
        except BaseException as exc:
            outcomes.append(exc)
            raise

    workers: list[threading.Thread] = []

    class InterruptedStart(threading.Thread):
        def start(self) -> None:
            workers.append(self)
            super().start()
            if len(workers) == 2:  # the first worker is asking by now
                asked.wait(5)
                raise KeyboardInterrupt

    monkeypatch.setattr(makenodes.threading, "Thread", InterruptedStart)
    with pytest.raises(KeyboardInterrupt):
        makenodes.connect_all(["a", "b", "c"], make, max_connecting=3, relay=relay)
    for t in workers:
        t.join(5)
    assert not any(t.is_alive() for t in workers)
    assert outcomes and all(isinstance(e, PromptUnavailable) for e in outcomes)
