"""Sessions opened the way ``ssh HOST`` would: ssh_config, keys, strict host keys,
proxies, and clear errors for each way a connection fails."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from sshdist_kernel import (
    AuthenticationError,
    ConnectError,
    HostKeyError,
    make_node,
    make_session,
    with_ssh,
)
from sshdist_kernel.localnodes import LocalNodes, _free_port
from sshdist_kernel.session import QUIET_WAKE

from .conftest import wait_until


@pytest.fixture
def node1(local_nodes: LocalNodes):
    return local_nodes.nodes[0]


def test_an_ssh_config_alias_connects_with_nodelay(ssh_config: str) -> None:
    with make_session("node1", ssh_config=ssh_config) as session:
        assert session.is_connected()
        assert session.run("echo $((6 * 7))").stdout == "42\n"
        sock = session.transport.sock
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1


def test_user_at_host_colon_port_with_explicit_files(local_nodes: LocalNodes, node1) -> None:
    spec = f"{local_nodes.user}@127.0.0.1:{node1.port}"
    with make_session(
        spec,
        identity=local_nodes.identity,
        known_hosts=local_nodes.known_hosts,
        ssh_config="/dev/null",
    ) as s:
        assert (s.user, s.host, s.port) == (local_nodes.user, "127.0.0.1", node1.port)
        assert s.run("true").status == 0


def test_command_status_and_stderr(ssh_config: str) -> None:
    with make_session("node1", ssh_config=ssh_config) as session:
        result = session.run("echo out; echo err >&2; exit 3")
        assert (result.status, result.stdout, result.stderr) == (3, "out\n", "err\n")


def test_an_unknown_host_key_is_refused_with_its_fingerprint(
    local_nodes: LocalNodes, node1, tmp_path: Path
) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("")
    with pytest.raises(HostKeyError, match=r"not known \(ssh-ed25519 SHA256:") as caught:
        make_session(
            f"127.0.0.1:{node1.port}",
            identity=local_nodes.identity,
            known_hosts=known,
            ssh_config="/dev/null",
        )
    expected = subprocess.run(
        ["ssh-keygen", "-lf", str(local_nodes.dir / "node1" / "ssh_host_ed25519_key.pub")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[1]
    assert expected in caught.value.fingerprint
    assert known.read_text() == ""


def test_accept_new_records_the_key_and_then_strict_checking_passes(
    local_nodes: LocalNodes, node1, tmp_path: Path
) -> None:
    known = tmp_path / "known_hosts"
    options = dict(identity=local_nodes.identity, known_hosts=known, ssh_config="/dev/null")
    make_session(f"127.0.0.1:{node1.port}", host_key_policy="accept-new", **options).close()
    assert known.read_text().startswith(f"[127.0.0.1]:{node1.port} ssh-ed25519 ")
    make_session(f"127.0.0.1:{node1.port}", **options).close()


def test_a_changed_host_key_is_refused(local_nodes: LocalNodes, node1, tmp_path: Path) -> None:
    other = (local_nodes.dir / "node2" / "ssh_host_ed25519_key.pub").read_text().split()
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{node1.port} {other[0]} {other[1]}\n")
    with pytest.raises(HostKeyError, match="CHANGED"):
        make_session(
            f"127.0.0.1:{node1.port}",
            identity=local_nodes.identity,
            known_hosts=known,
            ssh_config="/dev/null",
            host_key_policy="accept-new",
        )


def test_a_wrong_key_is_an_authentication_error(
    local_nodes: LocalNodes, node1, tmp_path: Path
) -> None:
    wrong = tmp_path / "id_wrong"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong)], check=True)
    with pytest.raises(AuthenticationError, match=f"refused authentication.*{wrong}"):
        make_session(
            f"127.0.0.1:{node1.port}",
            identity=wrong,
            known_hosts=local_nodes.known_hosts,
            ssh_config="/dev/null",
        )


def test_a_missing_key_file_is_named(local_nodes: LocalNodes, node1, tmp_path: Path) -> None:
    with pytest.raises(AuthenticationError, match="could not use .*no-such-key"):
        make_session(
            f"127.0.0.1:{node1.port}",
            identity=tmp_path / "no-such-key",
            known_hosts=local_nodes.known_hosts,
            ssh_config="/dev/null",
        )


def test_a_closed_port_is_a_connect_error() -> None:
    port = _free_port()
    with pytest.raises(ConnectError, match=f"refused the connection.*port {port}"):
        make_session(f"127.0.0.1:{port}", ssh_config="/dev/null")


def test_an_unresolvable_host_is_a_connect_error() -> None:
    with pytest.raises(ConnectError, match="cannot resolve host name no-such-host.invalid"):
        make_session("no-such-host.invalid", ssh_config="/dev/null")


def _config_with(local_nodes: LocalNodes, tmp_path: Path, alias: str, proxy: str) -> Path:
    """The local nodes' ssh_config plus ``alias``: node2 reached through ``proxy``."""
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host {alias}\n    HostName 127.0.0.1\n    Port {local_nodes.nodes[1].port}\n"
        f"    {proxy}\n    User {local_nodes.user}\n"
        f"    IdentityFile {local_nodes.identity}\n"
        f"    UserKnownHostsFile {local_nodes.known_hosts}\n\n" + local_nodes.ssh_config.read_text()
    )
    return config


def test_proxy_jump_through_another_node(local_nodes: LocalNodes, tmp_path: Path) -> None:
    config = _config_with(local_nodes, tmp_path, "behind", "ProxyJump node1")
    node = make_node("behind", ssh_config=config)
    try:
        assert with_ssh(node, "(+ 1 2)").value == 3
        assert node.session._jump is not None and node.session._jump.is_connected()
    finally:
        node.close()


@pytest.mark.skipif(shutil.which("ssh") is None, reason="needs the OpenSSH client")
def test_proxy_command(local_nodes: LocalNodes, tmp_path: Path) -> None:
    proxy = f"ProxyCommand ssh -F {local_nodes.ssh_config} -W %h:%p node1"
    config = _config_with(local_nodes, tmp_path, "viacommand", proxy)
    with make_session("viacommand", ssh_config=config) as session:
        assert session.run("echo via").stdout == "via\n"


@contextlib.contextmanager
def running_agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A real ssh-agent on a socket of its own, SSH_AUTH_SOCK pointing at it."""
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(
        ["ssh-agent", "-D", "-a", str(sock)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        wait_until(sock.exists, what="ssh-agent's socket")
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        yield sock
    finally:
        agent.terminate()
        agent.wait(10)


@pytest.fixture
def ssh_agent(local_nodes: LocalNodes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A real ssh-agent holding the local nodes' client key, for this test only."""
    with running_agent(tmp_path, monkeypatch) as sock:
        subprocess.run(
            ["ssh-add", "-q", str(local_nodes.identity)],
            check=True,
            timeout=30,
            capture_output=True,
        )
        yield sock


def test_keys_from_ssh_agent(local_nodes: LocalNodes, node1, ssh_agent: Path) -> None:
    # No identity file is named: the way in is the agent's key.
    with make_session(
        f"127.0.0.1:{node1.port}", known_hosts=local_nodes.known_hosts, ssh_config="/dev/null"
    ) as session:
        assert session.run("echo agent").stdout == "agent\n"
    with pytest.raises(AuthenticationError, match="refused authentication"):
        make_session(
            f"127.0.0.1:{node1.port}",
            known_hosts=local_nodes.known_hosts,
            ssh_config="/dev/null",
            allow_agent=False,
            identity=[],
        )


# -- peers that are not sshd, keys kept in ssh-agent, known_hosts markers, bad names ----


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def not_sshd():
    """A TCP listener on 127.0.0.1 that accepts and then says ``greeting`` (or nothing)."""
    servers: list[socket.socket] = []
    held: list[socket.socket] = []

    def start(greeting: bytes) -> int:
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(10)
        servers.append(server)

        def serve() -> None:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)
            if greeting:
                conn.sendall(greeting)

        threading.Thread(target=serve, daemon=True).start()
        return server.getsockname()[1]

    yield start
    for s in servers + held:
        s.close()


@pytest.mark.parametrize(
    "greeting", [b"", b"HTTP/1.1 400 Bad Request\r\n\r\n" * 10], ids=["silent", "http"]
)
def test_a_peer_that_does_not_speak_ssh_fails_within_the_connect_timeout(
    not_sshd, greeting: bytes
) -> None:
    port = not_sshd(greeting)
    fds = _fds()
    started = time.monotonic()
    with pytest.raises(ConnectError, match=f"accepted a TCP connection on port {port} but"):
        make_session(f"127.0.0.1:{port}", ssh_config="/dev/null", timeout=2)
    assert time.monotonic() - started < 2.5
    # The socket is closed with the failed transport (the fake server, in this process,
    # still holds its end of the connection: one descriptor).
    wait_until(lambda: _fds() <= fds + 1, timeout=5, what="the failed connection's socket to close")


def _askpass(tmp_path: Path, passphrase: str) -> dict[str, str]:
    script = tmp_path / "askpass"
    script.write_text(f"#!/bin/sh\necho {passphrase}\n")
    script.chmod(0o700)
    return {"SSH_ASKPASS": str(script), "SSH_ASKPASS_REQUIRE": "force", "DISPLAY": ":0"}


@pytest.fixture
def encrypted_key(local_nodes: LocalNodes, tmp_path: Path):
    """A passphrase-protected key the local nodes accept (its .pub moved away, as the
    OpenSSH private key format keeps the public half in the clear anyway)."""
    key = tmp_path / "id_locked"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "s3cret pass", "-f", str(key)], check=True
    )
    authorized = local_nodes.dir / "authorized_keys"
    before = authorized.read_text()
    authorized.write_text(before + key.with_suffix(".pub").read_text())
    key.with_suffix(".pub").rename(tmp_path / "elsewhere.pub")
    yield key
    authorized.write_text(before)


def test_an_encrypted_key_file_connects_through_the_agent_that_holds_it(
    local_nodes: LocalNodes, node1, encrypted_key: Path, tmp_path: Path, monkeypatch
) -> None:
    with running_agent(tmp_path, monkeypatch):
        env = {**os.environ, **_askpass(tmp_path, "'s3cret pass'")}
        subprocess.run(
            ["setsid", "-w", "ssh-add", "-q", str(encrypted_key)],
            check=True,
            timeout=30,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
        )
        config = tmp_path / "ssh_config"
        config.write_text(
            f"Host locked\n  HostName 127.0.0.1\n  Port {node1.port}\n"
            f"  IdentityFile {encrypted_key}\n  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {local_nodes.known_hosts}\n"
        )
        with make_session("locked", ssh_config=config) as session:  # IdentitiesOnly yes
            assert session.run("echo unlocked").stdout == "unlocked\n"
        with make_session(
            f"127.0.0.1:{node1.port}",
            identity=encrypted_key,
            known_hosts=local_nodes.known_hosts,
            ssh_config="/dev/null",
        ) as session:
            assert session.run("echo unlocked").stdout == "unlocked\n"


def test_broken_and_encrypted_key_files_are_named_and_leak_nothing(
    local_nodes: LocalNodes, node1, encrypted_key: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    broken = tmp_path / "id_broken"
    broken.write_text(
        "-----BEGIN OPENSSH PRIVATE KEY-----\nnot a key\n-----END OPENSSH PRIVATE KEY-----\n"
    )
    target = {"known_hosts": local_nodes.known_hosts, "ssh_config": "/dev/null"}
    make_session(f"127.0.0.1:{node1.port}", identity=local_nodes.identity, **target).close()
    threads, fds = threading.active_count(), _fds()
    for _ in range(10):
        with pytest.raises(AuthenticationError, match=f"could not use {broken} \\(not a usable"):
            make_session(f"127.0.0.1:{node1.port}", identity=broken, **target)
        with pytest.raises(
            AuthenticationError, match=f"could not use {encrypted_key} \\(encrypted: add it"
        ):
            make_session(f"127.0.0.1:{node1.port}", identity=encrypted_key, **target)
    wait_until(lambda: threading.active_count() <= threads, timeout=5, what="threads to end")
    assert _fds() <= fds


def _host_key_line(local_nodes: LocalNodes, node) -> str:
    name = f"[127.0.0.1]:{node.port}"
    return next(
        line for line in local_nodes.known_hosts.read_text().splitlines() if line.startswith(name)
    )


def test_cert_authority_lines_do_not_break_known_hosts(
    local_nodes: LocalNodes, node1, tmp_path: Path
) -> None:
    known = tmp_path / "known_hosts"
    some_key = _host_key_line(local_nodes, local_nodes.nodes[1]).split(" ", 1)[1]
    known.write_text(
        f"@cert-authority *.example.com {some_key}\n# a comment\n\nbroken line\n"
        + _host_key_line(local_nodes, node1)
        + "\n"
    )
    with make_session(
        f"127.0.0.1:{node1.port}",
        known_hosts=known,
        identity=local_nodes.identity,
        ssh_config="/dev/null",
    ) as session:
        assert session.run("true").status == 0


def test_a_revoked_host_key_is_refused_even_when_known(
    local_nodes: LocalNodes, node1, tmp_path: Path
) -> None:
    line = _host_key_line(local_nodes, node1)
    known = tmp_path / "known_hosts"
    known.write_text(f"{line}\n@revoked * {line.split(' ', 1)[1]}\n")
    with pytest.raises(HostKeyError, match="is REVOKED in known_hosts: nothing was sent"):
        make_session(
            f"127.0.0.1:{node1.port}",
            known_hosts=known,
            identity=local_nodes.identity,
            ssh_config="/dev/null",
        )


@pytest.mark.parametrize(
    "host",
    [
        "x:22 -oProxyCommand=touch${IFS}PWNED",
        "-oProxyCommand=touch PWNED",
        "a;touch PWNED",
        "a'b",
        "a$(id)",
    ],
)
def test_a_host_name_openssh_refuses_is_refused_before_any_proxy_command(
    local_nodes: LocalNodes, tmp_path: Path, monkeypatch, host: str
) -> None:
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "ssh_config"
    config.write_text(f"Host *\n  ProxyCommand ssh -F {local_nodes.ssh_config} -W %h:%p node1\n")
    with pytest.raises(ValueError, match="which OpenSSH refuses in a host name; nothing was run"):
        make_session(host, ssh_config=config)
    assert not (tmp_path / "PWNED").exists()
    assert not (tmp_path / "PWNED}").exists()


def test_a_key_file_is_loaded_once_until_it_changes(
    local_nodes: LocalNodes, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    loads = []
    from_path = paramiko.PKey.from_path
    monkeypatch.setattr(
        paramiko.PKey, "from_path", staticmethod(lambda p, *a: loads.append(p) or from_path(p, *a))
    )
    key = tmp_path / "id_copy"
    shutil.copyfile(local_nodes.identity, key)
    target = {"known_hosts": local_nodes.known_hosts, "ssh_config": "/dev/null", "identity": key}
    hosts = [f"127.0.0.1:{n.port}" for n in local_nodes.nodes[:3]]
    for host in hosts:
        make_session(host, **target).close()
    assert len(loads) == 1
    other = tmp_path / "id_other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    shutil.copyfile(other, key)  # a key the nodes do not accept, in the same file
    with pytest.raises(AuthenticationError, match="refused authentication"):
        make_session(hosts[0], **target)
    assert len(loads) == 2


def test_a_quiet_connection_wakes_its_transport_thread_seldom_and_closes_it(
    ssh_config: str,
) -> None:
    session = make_session("node1", ssh_config=ssh_config)
    transport = session.transport
    assert transport.sock.gettimeout() == QUIET_WAKE  # paramiko's own is 0.1 s
    assert session.run("echo awake").stdout == "awake\n"  # data still wakes it at once
    session.close()
    wait_until(lambda: not transport.is_alive(), timeout=QUIET_WAKE + 5, what="thread to end")


def test_an_identityfile_naming_the_public_key_of_an_agent_key(
    local_nodes: LocalNodes, node1, tmp_path: Path, ssh_agent: Path
) -> None:
    # OpenSSH's way to pick one agent key: IdentityFile id.pub, IdentitiesOnly yes.
    pub = tmp_path / "agent_key.pub"
    shutil.copyfile(local_nodes.identity.with_suffix(".pub"), pub)
    with make_session(
        f"127.0.0.1:{node1.port}",
        known_hosts=local_nodes.known_hosts,
        ssh_config="/dev/null",
        identity=str(pub),
    ) as session:
        assert session.run("echo picked").stdout == "picked\n"
    subprocess.run(["ssh-add", "-D"], check=True, timeout=30, capture_output=True)
    with pytest.raises(AuthenticationError, match="a public key whose private half is not in"):
        make_session(
            f"127.0.0.1:{node1.port}",
            known_hosts=local_nodes.known_hosts,
            ssh_config="/dev/null",
            identity=str(pub),
        )


def test_ssh_config_switching_publickey_off_is_named(local_nodes: LocalNodes, tmp_path) -> None:
    config = tmp_path / "ssh_config"
    config.write_text("PubkeyAuthentication no\n" + local_nodes.ssh_config.read_text())
    with pytest.raises(AuthenticationError) as caught:
        make_session("node1", ssh_config=str(config), prompt=None)
    assert (
        "it allows publickey, and ssh_config's PreferredAuthentications and *Authentication "
        "settings leave keyboard-interactive, password" in str(caught.value)
    )
    config.write_text("PreferredAuthentications password\n" + local_nodes.ssh_config.read_text())
    with pytest.raises(AuthenticationError, match="settings leave password[.]$"):
        make_session("node1", ssh_config=str(config), prompt=None)


def test_a_host_that_wants_gssapi_only_says_paramiko_has_none(tmp_path: Path) -> None:
    # LocalNodes' sshd_config sets neither: a host that takes Kerberos tickets only.
    gss = LocalNodes.up(
        1,
        tmp_path / "gss",
        sshd_extra="GSSAPIAuthentication yes\nAuthenticationMethods gssapi-with-mic\n",
    )
    try:
        config = tmp_path / "ssh_config"
        config.write_text("GSSAPIAuthentication yes\n" + gss.ssh_config.read_text())
        with pytest.raises(AuthenticationError) as caught:
            make_session("node1", ssh_config=str(config), prompt=None)
        message = str(caught.value)
        assert "gssapi-with-mic: GSSAPI (Kerberos) is not available in paramiko" in message
        assert "transport='openssh'" in message
    finally:
        gss.down()
