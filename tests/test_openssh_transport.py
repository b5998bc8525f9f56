"""``transport="openssh"``: nodes whose every channel is an ``ssh`` client of one
ControlMaster a host, against the real local sshd nodes.  Every wait is bounded and
every process a test starts is stopped by it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sshdist_kernel import (
    Node,
    dist_map,
    make_node,
    make_nodes,
    node_eval,
    node_loadavg,
    node_server_running,
    node_stop_server,
    with_ssh,
)
from sshdist_kernel.controlmaster import DroppedBeforeBanner, control_dir, ssh_error
from sshdist_kernel.errors import (
    AuthenticationError,
    ConnectError,
    HostKeyError,
    NodeError,
    NodeReplError,
    NodeTimeoutError,
)
from sshdist_kernel.localnodes import LocalNodes, _free_port
from sshdist_kernel.localsshd import _children
from sshdist_kernel.opensshsession import OpenSshSession
from sshdist_kernel.pipechannel import PipeChannel
from sshdist_kernel.server import UNIX
from sshdist_kernel.sshconfig import SessionOptions, resolve_options
from sshdist_kernel.transports import make_session

from .conftest import held_eval, held_until_killed, kill_once_held, wait_until
from .test_jumps import _dropping_relay, _via

pytestmark = pytest.mark.usefixtures("private_control_dir")

OPENSSH = {"transport": "openssh"}


@pytest.fixture
def onode(ssh_config: str) -> Iterator[Node]:
    n = make_node("node1", ssh_config=ssh_config, **OPENSSH)
    yield n
    n.close()


@pytest.fixture
def onodes(ssh_config: str) -> Iterator[list[Node]]:
    made = make_nodes(["node1", "node2", "node3"], ssh_config=ssh_config, **OPENSSH)
    yield made
    for n in made:
        n.close()


def connections(local_nodes: LocalNodes, name: str) -> int:
    """How many connections node ``name``'s sshd serves now (its child processes)."""
    pid = next(n.pid for n in local_nodes.nodes if n.name == name)
    return len(_children().get(pid, []))


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


# -- values, errors, output ---------------------------------------------------------------


def test_values_errors_and_output(onode: Node) -> None:
    assert isinstance(onode.session, OpenSshSession)
    assert with_ssh(onode, "(+ 1 2)").value == 3
    result = with_ssh(onode, '(display "hello") (newline)', "(define x 41)", "(+ x 1)")
    assert (result.value, result.output) == (42, "hello\n")
    assert node_eval(onode, '(string-upcase "abc")').value == "ABC"
    with pytest.raises(NodeReplError) as error:
        with_ssh(onode, "(car 1)")
    assert error.value.key == "wrong-type-arg"
    assert with_ssh(onode, "x").value == 41  # the REPL lived through the error
    loads = node_loadavg(onode).value
    assert set(loads) >= {"one", "five", "fifteen", "last_pid"}
    assert "openssh session" in repr(onode.session)


def test_run_and_stderr_and_exit_status(onode: Node) -> None:
    result = onode.session.run("echo out; echo err >&2; exit 3")
    assert (result.status, result.stdout, result.stderr) == (3, "out\n", "err\n")


def test_several_megabytes_arrive_whole(onode: Node) -> None:
    big = onode.session.run("head -c 6000000 /dev/zero | tr '\\0' x", timeout=30)
    assert big.status == 0 and big.stdout == "x" * 6_000_000
    value = with_ssh(onode, "(make-string 3000000 #\\y)", timeout=30).value
    assert value == "y" * 3_000_000
    printed = with_ssh(onode, "(display (make-string 4000000 #\\z)) 1", timeout=30)
    assert printed.output == "z" * 4_000_000


def test_dist_map_on_three_openssh_nodes(onodes: list[Node]) -> None:
    assert dist_map(onodes, "(lambda (x) (* x x))", range(100)) == [x * x for x in range(100)]


def test_interrupt_and_timeout_leave_the_repl_usable(onode: Node) -> None:
    with_ssh(onode, "(define kept 7)")
    errors: list[BaseException] = []
    started = threading.Event()

    def run() -> None:
        try:
            with_ssh(
                onode,
                '(begin (display "started\\n") (let loop () (loop)))',
                timeout=30,
                on_output=lambda stream, text: started.set(),
            )
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    assert started.wait(10)
    onode.interrupt()
    worker.join(10)
    assert not worker.is_alive()
    assert isinstance(errors[0], NodeReplError) and errors[0].message == "User interrupt"
    with pytest.raises(NodeTimeoutError):
        with_ssh(onode, "(let loop () (loop))", timeout=0.5)
    assert with_ssh(onode, "kept", timeout=10).value == 7
    assert onode.restarts == 0


@pytest.mark.parametrize("kind", [UNIX, "tcp"])
def test_repl_server_on_a_unix_socket_and_a_tcp_port(ssh_config: str, kind: str) -> None:
    port = _free_port() if kind == "tcp" else UNIX
    first = make_node("node2", port, ssh_config=ssh_config, **OPENSSH)
    second = None
    try:
        assert node_server_running(first)
        with_ssh(first, "(define shared 'kept)")
        second = make_node("node2", port, ssh_config=ssh_config, **OPENSSH)
        assert with_ssh(second, "shared").value == "kept"
        if kind == "tcp":  # the REPL is reached by ssh -W through the master
            assert any("-W" in c.process.args for c in second.session._channels)
    finally:
        node_stop_server(first)
        wait_until(lambda: not node_server_running(first), what="the server to stop")
        first.close()
        if second is not None:
            second.close()


# -- one connection a host ------------------------------------------------------------


def test_nodes_to_one_host_share_one_master(ssh_config: str, local_nodes: LocalNodes) -> None:
    before = connections(local_nodes, "node3")
    made = list(make_nodes(["node3"] * 3, ssh_config=ssh_config, **OPENSSH))  # at once
    try:
        pids = {n.session.master_pid for n in made}
        assert len(pids) == 1
        assert connections(local_nodes, "node3") == before + 1
        assert [with_ssh(n, "(+ 1 1)").value for n in made] == [2, 2, 2]
        master = pids.pop()
        made[0].close()
        made[1].close()
        assert alive(master)  # one session still uses it
        assert with_ssh(made[2], "'still").value == "still"
    finally:
        for n in made:
            n.close()
    wait_until(lambda: not alive(master), 5, "our master to stop with its last session")
    assert not os.path.exists(made[2].session.control_path or control_dir() / "none")


def test_the_users_own_master_is_used_as_it_is_and_left_running(
    ssh_config: str, local_nodes: LocalNodes
) -> None:
    folder = Path(tempfile.mkdtemp(prefix="sdu-", dir="/tmp"))
    path = str(folder / "mine")
    config = folder / "ssh_config"
    config.write_text(f"Host node2\n    ControlPath {path}\n\n" + Path(ssh_config).read_text())
    master = subprocess.run(
        ["ssh", "-F", ssh_config, "-M", "-S", path, "-fN", "-o", "BatchMode=yes", "node2"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=20,
    )
    assert master.returncode == 0, master.stderr

    def check() -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            ["ssh", "-S", path, "-O", "check", "node2"], capture_output=True, timeout=10
        )

    try:
        before = connections(local_nodes, "node2")
        node = make_node("node2", ssh_config=str(config), **OPENSSH)
        try:
            assert node.session.users_master and node.session.control_path == path
            assert with_ssh(node, "(* 6 7)").value == 42
            assert connections(local_nodes, "node2") == before  # no connection of ours
        finally:
            node.close()
        assert check().returncode == 0  # theirs: still up after close
    finally:
        subprocess.run(["ssh", "-S", path, "-O", "exit", "node2"], capture_output=True, timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


# -- breaking it --------------------------------------------------------------------------


def test_a_master_killed_mid_call_is_a_node_error_and_the_next_call_reconnects(
    onode: Node, tmp_path: Path
) -> None:
    pid = onode.session.master_pid
    flag = tmp_path / "running"
    killer = kill_once_held(flag, lambda: os.kill(pid, signal.SIGKILL))
    started = time.monotonic()
    with pytest.raises(NodeError):
        with_ssh(onode, held_eval(flag), timeout=20)
    killer.join(30)
    assert time.monotonic() - started < 4
    assert with_ssh(onode, "'again", timeout=20).value == "again"
    assert onode.session.master_pid != pid


@pytest.mark.usefixtures("quick_probes")
def test_a_stopped_master_is_noticed_within_the_probe(onode: Node, stopped: list[int]) -> None:
    pid = onode.session.master_pid
    os.kill(pid, signal.SIGSTOP)
    stopped.append(pid)
    started = time.monotonic()
    with pytest.raises(NodeError, match="stopped answering"):
        with_ssh(onode, "(+ 1 2)", timeout=30)
    assert time.monotonic() - started < 15
    assert not alive(pid)  # ours, hung: killed
    assert with_ssh(onode, "(+ 1 2)", timeout=20).value == 3


def test_dist_map_moves_work_off_a_node_whose_master_dies(
    onodes: list[Node], tmp_path: Path
) -> None:
    victim, flag = onodes[1], tmp_path / "held"
    pid = victim.session.master_pid
    proc = held_until_killed(victim, flag)
    killer = kill_once_held(flag, lambda: os.kill(pid, signal.SIGKILL))
    result = dist_map(onodes, proc, range(60), timeout=120)
    killer.join(30)
    assert result == [2 * x for x in range(60)]
    assert [f.node for f in result.failures] == [victim]
    assert result.moves and {m.from_node for m in result.moves} == {victim}  # what it held
    assert with_ssh(victim, "'back", timeout=20).value == "back"


def test_a_refusing_host_is_a_connect_error(ssh_config: str) -> None:
    started = time.monotonic()
    with pytest.raises(ConnectError, match="Connection refused") as error:
        make_node(f"127.0.0.1:{_free_port()}", timeout=5, **OPENSSH)
    assert "127.0.0.1" in str(error.value)
    assert time.monotonic() - started < 5


def test_a_wrong_host_key_is_a_host_key_error(
    ssh_config: str, local_nodes: LocalNodes, tmp_path: Path
) -> None:
    lines = local_nodes.known_hosts.read_text().splitlines()
    wrong = tmp_path / "known_hosts"
    wrong.write_text(lines[0].split()[0] + " " + lines[1].split(None, 1)[1] + "\n")
    started = time.monotonic()
    with pytest.raises(HostKeyError, match="CHANGED") as error:
        make_node("node1", ssh_config=ssh_config, known_hosts=str(wrong), **OPENSSH)
    assert time.monotonic() - started < 5
    assert error.value.fingerprint.startswith("SHA256:")
    assert "node1" in str(error.value)
    empty = tmp_path / "empty"
    empty.write_text("")
    with pytest.raises(HostKeyError, match="No ED25519 host key is known"):
        make_node("node1", ssh_config=ssh_config, known_hosts=str(empty), **OPENSSH)


def _config_with_key(local_nodes: LocalNodes, folder: Path, key: Path) -> Path:
    config = folder / "ssh_config"
    text = local_nodes.ssh_config.read_text().replace(str(local_nodes.identity), str(key))
    config.write_text(text)
    return config


def test_a_refused_key_is_an_authentication_error(local_nodes: LocalNodes, tmp_path: Path) -> None:
    key = tmp_path / "stranger"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30
    )
    config = _config_with_key(local_nodes, tmp_path, key)
    started = time.monotonic()
    with pytest.raises(AuthenticationError, match="Permission denied"):
        make_node("node1", ssh_config=str(config), **OPENSSH)
    assert time.monotonic() - started < 5


def test_prompts_go_through_the_askpass_bridge(local_nodes: LocalNodes, tmp_path: Path) -> None:
    key = tmp_path / "locked"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "sesame", "-f", str(key)],
        check=True,
        timeout=30,
    )
    with open(local_nodes.dir / "authorized_keys", "a") as keys:
        keys.write(key.with_suffix(".pub").read_text())
    config = _config_with_key(local_nodes, tmp_path, key)
    asked: list[tuple[str, bool]] = []

    def session(prompt: object) -> OpenSshSession:
        options = resolve_options("node1", ssh_config=str(config), allow_agent=False)
        options.prompt = prompt  # type: ignore[attr-defined]  # SessionOptions.prompt to come
        return OpenSshSession(options)

    def answer(text: str, echo: bool) -> str:
        asked.append((text, echo))
        return "sesame"

    with session(answer) as s:
        assert s.run("echo in").stdout == "in\n"
    assert len(asked) == 1 and "passphrase" in asked[0][0] and asked[0][1] is False
    assert not [p for p in control_dir().iterdir() if p.name.startswith("ap-")]
    with pytest.raises(AuthenticationError):
        session(lambda text, echo: None)  # no answer: ssh gives the key up
    started = time.monotonic()
    with pytest.raises(AuthenticationError):
        session(None)  # no one to ask: BatchMode, no hang on a terminal
    assert time.monotonic() - started < 5


def test_a_missing_ssh_binary_is_a_clear_error(
    ssh_config: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConnectError, match="OpenSSH's ssh client is not installed"):
        make_node("node1", ssh_config=ssh_config, **OPENSSH)


def test_an_unknown_transport_is_refused(ssh_config: str) -> None:
    with pytest.raises(ValueError, match="transport must be 'paramiko' or 'openssh'"):
        make_session("node1", ssh_config=ssh_config, transport="telnet")
    with pytest.raises(ValueError, match="starts with '-'"):  # the same name checks
        make_session("-oProxyCommand=x", transport="openssh")


_CTRL_C = r"""
import sys, time
from sshdist_kernel import make_node, with_ssh
node = make_node("node1", ssh_config=sys.argv[1], transport="openssh")
repl, master = node.rrepl.pid, node.session.master_pid
print("ready", flush=True)
try:
    evaluating = lambda stream, text: print("evaluating", flush=True)  # noqa: E731
    slow = '(begin (display "1\n") (sleep 20) (quote slept))'
    with_ssh(node, slow, timeout=30, on_output=evaluating)
    print("not interrupted", flush=True)
except KeyboardInterrupt:
    print("ctrl-c", flush=True)
value = with_ssh(node, "(+ 1 2)", timeout=20).value
same = (node.rrepl.pid, node.session.master_pid, node.restarts) == (repl, master, 0)
print("after", value, same, flush=True)
node.close()
"""


def test_ctrl_c_in_python_leaves_the_ssh_children_running(ssh_config: str) -> None:
    """A terminal's Ctrl-C goes to the whole foreground process group: the ssh
    processes (master, channels) are in sessions of their own and live on."""
    child = subprocess.Popen(
        [sys.executable, "-c", _CTRL_C, ssh_config],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ},
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        assert child.stdout.readline().strip() == "evaluating"  # the node sleeps now
        os.killpg(child.pid, signal.SIGINT)
        out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait(5)
    assert out.split("\n")[:2] == ["ctrl-c", "after 3 True"], err


def test_pipe_channel_reads_never_block_past_their_timeout() -> None:
    process = subprocess.Popen(
        ["sleep", "5"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    channel = PipeChannel(process)
    try:
        channel.settimeout(0.2)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            channel.recv(10)
        assert 0.15 < time.monotonic() - started < 1
        assert not channel.recv_stderr_ready()
        assert not channel.status_event.wait(0.05)
    finally:
        channel.close()
    assert channel.closed and process.poll() is not None


def test_transport_reaches_kernelspec_and_cli() -> None:
    from sshdist_kernel.cli import _parser
    from sshdist_kernel.kernelspec import kernel_json

    spec = kernel_json("node1", transport="openssh")
    assert spec["argv"][-2:] == ["--transport", "openssh"]
    assert spec["metadata"]["sshdist"]["transport"] == "openssh"
    assert _parser().parse_args(["rrepl", "h", "--transport", "openssh"]).transport == "openssh"


@pytest.mark.parametrize(
    "stderr",
    [
        # OpenSSH 9.2's words for a connection the server reset: after ssh's banner went
        # out, and before (the second is all it prints then), and one closed.
        "kex_exchange_identification: read: Connection reset by peer\n"
        "Connection reset by 127.0.0.1 port 51173\n",
        "Connection reset by 127.0.0.1 port 51173\n",
        "kex_exchange_identification: Connection closed by remote host\n"
        "Connection closed by 127.0.0.1 port 51173\n",
    ],
)
def test_every_way_ssh_says_it_was_dropped_before_the_banner_is_tried_again(
    stderr: str,
) -> None:
    options = SessionOptions(alias="relayed", hostname="127.0.0.1", port=51173)
    assert isinstance(ssh_error(options, 255, stderr), DroppedBeforeBanner)
    refused = "ssh: connect to host 127.0.0.1 port 51173: Connection refused\n"
    assert not isinstance(ssh_error(options, 255, refused), DroppedBeforeBanner)


def test_a_connection_dropped_before_the_banner_is_tried_again_by_ssh_too(
    local_nodes: LocalNodes, tmp_path: Path
) -> None:
    with _dropping_relay(local_nodes.nodes[0].port, drop_first=2) as (port, accepted):
        config = _via(local_nodes, tmp_path, port)
        with make_session("relayed", ssh_config=str(config), transport="openssh") as session:
            assert session.run("echo up").stdout == "up\n"
        assert accepted[0] == 3
    with _dropping_relay(local_nodes.nodes[0].port, drop_first=10**6) as (port, accepted):
        config = _via(local_nodes, tmp_path, port)
        with pytest.raises(ConnectError, match="closed the connection before the SSH banner"):
            make_session("relayed", ssh_config=str(config), transport="openssh", timeout=2)
        assert accepted[0] >= 2
