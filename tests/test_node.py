"""Nodes over real sshd: the chapter's node procedures, failures and recovery."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sshdist_kernel import (
    UNIX,
    Node,
    NodeError,
    NodeReplError,
    NodeTimeoutError,
    Session,
    is_node,
    make_node,
    make_session,
    node_eval,
    node_guile_version,
    node_loadavg,
    node_repl_port,
    node_run_server,
    node_server_running,
    node_session,
    node_stop_server,
    with_ssh,
)
from sshdist_kernel.guile import GuileRepl
from sshdist_kernel.localnodes import LocalNodes, _free_port

from .conftest import wait_until
from .test_rrepl import run_endless_loop


def test_printed_form_as_in_the_chapter(node: Node, local_nodes: LocalNodes) -> None:
    port = local_nodes.nodes[0].port
    user = local_nodes.user
    assert re.fullmatch(rf"#<node {user}@127\.0\.0\.1:{port}/exec [0-9a-f]+>", repr(node))


def test_node_accessors(node: Node) -> None:
    assert is_node(node) and not is_node("node1")
    assert isinstance(node_session(node), Session)
    assert node_repl_port(node) is None


def test_with_ssh_evaluates_a_body_and_returns_four_values(node: Node) -> None:
    value, num, module, language = with_ssh(node, "(define z 2)", "(* z 21)")
    assert (value, module, language) == (42, "(guile-user)", "scheme")
    assert isinstance(num, int)


def test_with_ssh_keeps_a_value_when_the_code_prints(node: Node) -> None:
    result = with_ssh(node, '(display "hello")', "42")
    assert (result.value, result.output) == (42, "hello")


def test_node_eval(node: Node) -> None:
    assert node_eval(node, '(string-upcase "abc")').value == "ABC"


def test_node_loadavg(node: Node) -> None:
    load, num, module, language = node_loadavg(node)
    assert set(load) == {"one", "five", "fifteen", "scheduling_entities", "last_pid"}
    assert all(isinstance(load[k], float) and load[k] >= 0 for k in ("one", "five", "fifteen"))
    running, total = load["scheduling_entities"]
    assert 1 <= running <= total
    assert isinstance(num, int) and (module, language) == ("(guile-user)", "scheme")


def test_node_guile_version(node: Node) -> None:
    version = node_guile_version(node)
    assert version is not None and re.fullmatch(r"3\.\d+\.\d+", version)
    assert version == node.rrepl.version


def test_missing_guile_is_a_clear_node_error(ssh_config: str) -> None:
    session = make_session("node1", ssh_config=ssh_config)
    try:
        with pytest.raises(NodeError, match="'guile-not-here' is not installed on node1"):
            Node(session, language=GuileRepl(guile="guile-not-here")).rrepl  # noqa: B018
        node = Node(session, language=GuileRepl(guile="guile-not-here"))
        assert node_guile_version(node) is None
    finally:
        session.close()


@pytest.mark.parametrize("repl_port", [None, UNIX])
def test_a_guile_path_missing_on_the_node_names_the_host_and_the_command(
    ssh_config: str, repl_port: str | None
) -> None:
    with pytest.raises(NodeError) as caught:
        make_node("node1", repl_port, ssh_config=ssh_config, guile="/opt/guile/bin/guile")
    message = str(caught.value)
    assert "'/opt/guile/bin/guile' is not installed on node1" in message
    assert "guile=" in message


def test_guile_names_the_guile_a_node_runs(ssh_config: str) -> None:
    guile = shutil.which("guile-3.0") or shutil.which("guile")
    assert guile, "the local nodes need Guile"
    with make_node("node1", ssh_config=ssh_config, guile=guile) as node:
        assert node.language.executable == guile
        assert node.version and node.version.startswith("3.")
        assert with_ssh(node, "(+ 1 2)").value == 3
    with pytest.raises(TypeError, match="either guile or language"):
        make_node("node1", ssh_config=ssh_config, guile=guile, language=GuileRepl())


class ChattyLogin(GuileRepl):
    """A host whose login shell greets every command, as some ~/.bashrc files do."""

    def command(self) -> str:
        return "echo 'Welcome to node1!'; printf 'no newline'; " + super().command()


def test_text_printed_by_the_login_shell_is_skipped(ssh_config: str) -> None:
    node = make_node("node1", ssh_config=ssh_config, language=ChattyLogin())
    try:
        assert node.rrepl.banner == "Welcome to node1!\nno newline"
        assert with_ssh(node, "(+ 1 2)").value == 3
    finally:
        node.close()


def test_a_killed_guile_is_a_node_error_and_the_next_call_starts_fresh(node: Node) -> None:
    with_ssh(node, "(define before 1)")
    os.kill(node.rrepl.pid, signal.SIGKILL)  # the local nodes run on this machine
    with pytest.raises(NodeError, match="remote REPL on node1 .* ended"):
        with_ssh(node, "(+ 1 2)")
    assert with_ssh(node, "(+ 1 2)").value == 3
    with pytest.raises(NodeReplError, match="before"):
        with_ssh(node, "before")


def test_guile_killed_during_an_evaluation(node: Node) -> None:
    pid = node.rrepl.pid
    with pytest.raises(NodeError, match="ended"):
        with_ssh(node, f"(begin (kill {pid} SIGKILL) (sleep 5))")
    assert with_ssh(node, "'back").value == "back"


def test_a_stopped_sshd_is_a_node_error_and_the_node_reconnects(
    local_nodes: LocalNodes, ssh_config: str
) -> None:
    node = make_node("node3", ssh_config=ssh_config)
    try:
        assert with_ssh(node, "(+ 1 2)").value == 3
        local_nodes.stop("node3", signal.SIGKILL)
        with pytest.raises(NodeError, match="node3"):
            with_ssh(node, "(+ 1 2)", timeout=10)
        with pytest.raises(NodeError, match="refused the connection"):
            with_ssh(node, "(+ 1 2)", timeout=10)
        local_nodes.start("node3")
        assert with_ssh(node, "(+ 1 2)").value == 3
    finally:
        local_nodes.start("node3")
        node.close()


def test_the_node_stays_usable_after_every_kind_of_error(node: Node) -> None:
    for bad in ["(car 1)", '(error "x")', "undefined-thing", ")"]:
        with pytest.raises(NodeReplError):
            with_ssh(node, bad)
    assert with_ssh(node, "(+ 1 2)").value == 3


@pytest.mark.parametrize("repl_port", [UNIX, "tcp"])
def test_repl_server_keeps_state_between_nodes(ssh_config: str, repl_port: object) -> None:
    port = _free_port() if repl_port == "tcp" else repl_port
    first = make_node("node1", port, ssh_config=ssh_config)
    second = None
    try:
        assert node_server_running(first)
        assert re.search(rf"/{port} [0-9a-f]+>$", repr(first))
        with_ssh(first, "(define shared 'from-first)")
        second = make_node("node1", port, ssh_config=ssh_config)
        assert with_ssh(second, "shared").value == "from-first"
        if port == UNIX:
            mode = first.session.run('stat -c %a "${XDG_RUNTIME_DIR:-$HOME/.cache}/sshdist"')
            assert mode.stdout.strip() == "700"
    finally:
        node_stop_server(first)
        wait_until(lambda: not node_server_running(first), what="the server to stop")
        first.close()
        if second is not None:
            second.close()


# Connects to 127.0.0.1:PORT, sends the bytes given in hex, and prints what came back
# before the server closed the connection; the same code runs as root and as another user.
_PROBE = """
import socket, sys
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10) as s:
    data = bytes.fromhex(sys.argv[2])
    if data:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
    got = b""
    try:
        while chunk := s.recv(65536):
            got += chunk
    except ConnectionResetError:
        pass
    print(got.hex())
"""


def start_probe(port: int, data: bytes, user: str | None = None) -> subprocess.Popen[str]:
    """A client of the server on ``port`` that sends ``data`` first, as ``user`` (runuser)."""
    command = [sys.executable, "-c", _PROBE, str(port), data.hex()]
    if user is not None:
        command = ["runuser", "-u", user, "--", "/usr/bin/python3", *command[1:]]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/"
    )


def probe_answer(probe: subprocess.Popen[str]) -> bytes:
    """What the server sent the probe before closing its connection."""
    out, err = probe.communicate(timeout=30)
    assert probe.returncode == 0, err
    return bytes.fromhex(out.strip())


def request(source: str) -> bytes:
    data = source.encode()
    return b"e%d\n" % len(data) + data


@pytest.fixture
def other_user() -> Iterator[str]:
    """A second local Unix user, removed after the test."""
    if os.geteuid() != 0:
        pytest.skip("creating a second local user needs root")
    if not (
        shutil.which("useradd") and shutil.which("runuser") and Path("/usr/bin/python3").exists()
    ):
        pytest.skip("needs useradd, runuser and /usr/bin/python3 to act as a second user")
    name = f"sshdist-other-{os.getpid()}"
    subprocess.run(["userdel", name], capture_output=True, timeout=30)
    subprocess.run(
        ["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        check=True,
        capture_output=True,
        timeout=30,
    )
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], capture_output=True, timeout=30)


@pytest.fixture
def tcp_node(ssh_config: str) -> Iterator[Node]:
    """node1 with a REPL server on a free TCP port, stopped after the test."""
    node = make_node("node1", _free_port(), ssh_config=ssh_config)
    try:
        yield node
    finally:
        node_stop_server(node)
        node.close()


def server_file(node: Node, suffix: str) -> str:
    return node.session.run(f"echo {node._server_path(suffix)}").stdout.strip()


def test_a_tcp_server_runs_nothing_for_another_local_user(
    tcp_node: Node, other_user: str, tmp_path: Path
) -> None:
    port = tcp_node.repl_port
    made = tmp_path / "made"
    make_file = request(f'(close-port (open-output-file "{made}"))')
    key = Path(server_file(tcp_node, "key"))
    assert oct(key.stat().st_mode & 0o777) == "0o600"

    reading = subprocess.run(
        ["runuser", "-u", other_user, "--", "cat", str(key)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert reading.returncode != 0 and "Permission denied" in reading.stderr
    for first in [b"", b"k64\n" + b"0" * 64]:
        assert probe_answer(start_probe(port, first + make_file, other_user)) == b""
    assert not made.exists()

    assert with_ssh(tcp_node, "(+ 1 2)").value == 3  # refused clients leave the node alone
    log = tcp_node.session.run(f"cat {tcp_node._server_path('log')}").stdout
    assert "refused a client from 127.0.0.1" in log and "wrong key" in log

    # With the key the same request is served: the refusal kept the file away.
    secret = key.read_bytes().strip()
    answer = probe_answer(start_probe(port, b"k%d\n" % len(secret) + secret + make_file))
    assert answer.startswith(b"\0sshdist-rrepl\0h") and made.exists()


def test_a_tcp_server_refuses_root_without_the_key(tcp_node: Node, tmp_path: Path) -> None:
    port = tcp_node.repl_port
    silent = start_probe(port, b"")  # says nothing: closed after 5 s; the rest meanwhile
    made = tmp_path / "made"
    make_file = request(f'(close-port (open-output-file "{made}"))')
    key = Path(server_file(tcp_node, "key")).read_bytes().strip()
    wrong = bytes(reversed(key))
    for first in [b"", b"k%d\n" % len(wrong) + wrong, b"k3\nabc", b"\n" + key + b"\n"]:
        assert probe_answer(start_probe(port, first + make_file)) == b"", first
    assert not made.exists()
    assert with_ssh(tcp_node, "(+ 1 2)").value == 3
    assert probe_answer(silent) == b""
    log = tcp_node.session.run(f"cat {tcp_node._server_path('log')}").stdout
    assert "no key within 5 s" in log
    assert log.count("refused a client") == 5


def test_a_tcp_server_whose_key_file_is_gone_is_a_clear_error(
    tcp_node: Node, ssh_config: str
) -> None:
    Path(server_file(tcp_node, "key")).unlink()
    with pytest.raises(NodeError, match=r"on node1 .*port \d+ has no key file .*node_stop_server"):
        make_node("node1", tcp_node.repl_port, ssh_config=ssh_config)


def test_node_stop_server_ends_a_busy_tcp_server_and_frees_its_port(ssh_config: str) -> None:
    port = _free_port()
    node = make_node("node1", port, ssh_config=ssh_config)
    other = make_node("node1", port, ssh_config=ssh_config)
    try:
        pid = node.rrepl.pid
        worker, errors = run_endless_loop(node)  # a client thread that never returns
        node_stop_server(other)
        assert not node_server_running(other)
        worker.join(10)
        assert not worker.is_alive() and isinstance(errors[0], NodeError)
        assert (
            not Path(f"/proc/{pid}").exists()
            or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
        )
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), 5).close()
        with socket.socket() as s:  # free for a new server, which sets SO_REUSEADDR too
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            s.listen()
        # A restarted server has a new key: the node that kept the old one reads it again.
        node_run_server(other)
        assert with_ssh(node, "(+ 1 2)").value == 3
        assert "wrong key" in node.session.run(f"cat {node._server_path('log')}").stdout
    finally:
        node_stop_server(node)
        node.close()
        other.close()


def test_a_server_client_is_interrupted_without_disturbing_another(ssh_config: str) -> None:
    node = make_node("node1", UNIX, ssh_config=ssh_config)
    other = make_node("node1", UNIX, ssh_config=ssh_config)
    try:
        with_ssh(node, "(define kept 1)")
        worker, errors = run_endless_loop(node)
        assert with_ssh(other, "(+ kept 1)").value == 2  # the server still serves others
        node.interrupt()
        worker.join(10)
        assert not worker.is_alive()
        assert errors[0].message == "User interrupt"
        with pytest.raises(NodeTimeoutError):
            with_ssh(node, "(let loop () (loop))", timeout=0.5)
        assert with_ssh(node, "kept").value == 1
    finally:
        node_stop_server(node)
        node.close()
        other.close()


def test_a_server_port_already_taken_is_a_clear_error(ssh_config: str) -> None:
    with socket.socket() as taken:  # the local nodes share this machine's loopback
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(
            NodeError,
            match=f"did not start .*cannot listen on 127.0.0.1:{port}: Address already in use",
        ):
            make_node("node1", port, ssh_config=ssh_config)


def test_server_procedures_refuse_an_exec_node(node: Node) -> None:
    with pytest.raises(NodeError, match="exec channel"):
        node_run_server(node)


@pytest.mark.parametrize("bad", ["37146", 0, 70000, True, 1.5])
def test_make_node_rejects_a_bad_repl_port(ssh_config: str, bad: object) -> None:
    with pytest.raises(ValueError, match="repl_port must be None, 'unix' or a port number"):
        make_node("node1", bad, ssh_config=ssh_config)


def test_two_threads_on_one_node_take_turns(node: Node) -> None:
    results: dict[int, list[object]] = {0: [], 1: []}

    def work(k: int) -> None:
        for i in range(50):
            results[k].append(with_ssh(node, f"(begin (display {i}) (* {k + 1} {i}))"))

    threads = [threading.Thread(target=work, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for k in (0, 1):
        assert [r.value for r in results[k]] == [(k + 1) * i for i in range(50)]
        assert [r.output for r in results[k]] == [str(i) for i in range(50)]
    nums = sorted(r.eval_num for k in (0, 1) for r in results[k] if r.eval_num is not None)
    assert nums == sorted(set(nums))  # no value numbered twice


def test_close_does_not_wait_for_a_reconnect_under_way(node: Node, monkeypatch) -> None:
    """A reconnect may wait on a person typing a code for the login node; close() from
    another thread waited for them too (29 s of a 30 s answer), then the node."""
    node.session.close()  # the connection dropped: the next call reconnects
    entered, answer = threading.Event(), threading.Event()
    connect = node.session.connect

    def slow_connect(timeout: float | None = None) -> None:
        entered.set()
        answer.wait(10)
        connect(timeout=timeout)

    monkeypatch.setattr(node.session, "connect", slow_connect)
    failed: list[BaseException] = []

    def call() -> None:
        try:
            with_ssh(node, "(+ 1 2)")
        except NodeError as exc:
            failed.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    assert entered.wait(5)
    started = time.monotonic()
    node.close()
    took = time.monotonic() - started
    answer.set()
    caller.join(10)
    assert took < 1
    assert len(failed) == 1 and "closed while" in str(failed[0]), failed
    assert node.closed and not node.session.is_connected() and not node.ready
