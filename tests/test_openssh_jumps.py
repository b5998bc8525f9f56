"""``transport="openssh"`` behind a 2FA login node (the local cluster): nodes behind one
jump host share one master to it, so one connection there and one one-time code."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from sshdist_kernel import AuthenticationError, NodeError, make_node, make_nodes, with_ssh
from sshdist_kernel.controlmaster import alive
from sshdist_kernel.localnodes import established_to
from sshdist_kernel.opensshsession import JUMPS

from .conftest import held_eval, kill_once_held, wait_until
from .test_cluster_login import Person, certified_key

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="a local cluster needs root"),
    pytest.mark.usefixtures("private_control_dir"),
]

OPENSSH = {"transport": "openssh"}


@pytest.fixture
def cluster(local_cluster):
    yield local_cluster
    wait_until(lambda: not JUMPS._entries, 5, "the jump session to close")
    wait_until(lambda: established_to(local_cluster.login_port) == 0, 5, "the login to end")


def _up_behind_the_login_node(cluster, names: list[str]) -> None:
    person = Person(cluster.totp_code)
    nodes = make_nodes(names, ssh_config=str(cluster.ssh_config), prompt=person, **OPENSSH)
    try:
        assert established_to(cluster.login_port) == 1
        jumps = {n.session.jump for n in nodes}
        assert len(jumps) == 1 and None not in jumps
        jump = jumps.pop()
        assert [with_ssh(n, "(+ 1 2)").value for n in nodes] == [3] * len(names)
    finally:
        for n in nodes:
            n.close()
    assert len(person.asked) == 1
    text, echo, thread = person.asked[0]
    assert "One-time password" in text and echo is False
    assert thread == threading.current_thread().name
    wait_until(lambda: not alive(jump.master_pid or 0), 5, "the jump master to stop")


def test_four_nodes_behind_a_2fa_login_node_one_master_one_code(cluster) -> None:
    _up_behind_the_login_node(cluster, cluster.compute_names)


def test_sixteen_nodes_behind_a_2fa_login_node(tmp_path: Path) -> None:
    from sshdist_kernel.localcluster import LocalCluster

    big = LocalCluster.up(tmp_path / "big", compute=16)
    try:
        started = time.monotonic()
        _up_behind_the_login_node(big, big.compute_names)
        print(f"16 openssh nodes behind the login node: {time.monotonic() - started:.1f} s")
    finally:
        big.down()


def test_a_wrong_code_is_an_authentication_error_naming_the_login_node(cluster) -> None:
    person = Person(lambda: "000000")
    with pytest.raises(AuthenticationError) as caught:
        make_nodes(["cn01", "cn02"], ssh_config=str(cluster.ssh_config), prompt=person, **OPENSSH)
    message = str(caught.value)
    assert message.startswith("login (") and "Permission denied" in message
    assert len(person.asked) == 3  # NumberOfPasswordPrompts; cn02 waited, was not asked


def test_nobody_to_ask_is_a_clear_error_not_a_hang(cluster) -> None:
    started = time.monotonic()
    with pytest.raises(AuthenticationError) as caught:
        make_nodes(["cn01", "cn02"], ssh_config=str(cluster.ssh_config), prompt=None, **OPENSSH)
    message = str(caught.value)
    assert "login (" in message and "One-time password" in message
    assert "nobody could answer" in message and "prompt=" in message
    with pytest.raises(AuthenticationError, match="BatchMode"):
        make_node("cn01", ssh_config=str(cluster.ssh_config), prompt=None, **OPENSSH)
    assert time.monotonic() - started < 10


def test_the_jump_master_killed_mid_call_then_the_next_call_asks_again(
    cluster, tmp_path: Path
) -> None:
    person = Person(cluster.totp_code)
    nodes = make_nodes(
        ["cn01", "cn02"], ssh_config=str(cluster.ssh_config), prompt=person, **OPENSSH
    )
    try:
        pid = nodes[0].session.jump.master_pid
        flag = tmp_path / "running"
        killer = kill_once_held(flag, lambda: os.kill(pid, signal.SIGKILL))
        started = time.monotonic()
        with pytest.raises(NodeError):
            with_ssh(nodes[0], held_eval(flag), timeout=20)
        killer.join(30)
        assert time.monotonic() - started < 4
        assert with_ssh(nodes[0], "'again", timeout=20).value == "again"
        assert with_ssh(nodes[1], "'too", timeout=20).value == "too"
        assert nodes[0].session.jump is nodes[1].session.jump
        assert nodes[0].session.jump.master_pid != pid
        assert established_to(cluster.login_port) == 1
    finally:
        for n in nodes:
            n.close()
    assert len(person.asked) == 2


def test_a_certificate_named_by_certificatefile_logs_in(cluster, tmp_path: Path) -> None:
    _, cert, config, base = certified_key(cluster, tmp_path)
    person = Person(cluster.totp_code)
    with pytest.raises(AuthenticationError, match="Permission denied"):
        make_node("login", ssh_config=str(config), prompt=person, **OPENSSH)  # key alone
    config.write_text(f"Host *\n    CertificateFile {cert}\n\n" + base)
    node = make_node("cn01", ssh_config=str(config), prompt=person, **OPENSSH)
    try:
        assert with_ssh(node, "(+ 1 2)").value == 3
    finally:
        node.close()


def test_a_chain_of_jumps_shares_at_each_hop(cluster, tmp_path: Path) -> None:
    config = tmp_path / "ssh_config"
    text = cluster.ssh_config.read_text()
    config.write_text(text.replace("ProxyJump login\n", "ProxyJump login,login\n"))
    person = Person(cluster.totp_code)
    nodes = make_nodes(cluster.compute_names, ssh_config=str(config), prompt=person, **OPENSSH)
    try:
        second = {n.session.jump for n in nodes}
        assert len(second) == 1
        first = second.pop().jump
        assert first is not None and first.jump is None
        # Ours to the first hop, and the first hop's own to the second (login to itself).
        assert established_to(cluster.login_port) == 2
        assert [with_ssh(n, "(+ 1 2)").value for n in nodes] == [3] * len(nodes)
    finally:
        for n in nodes:
            n.close()
    assert len(person.asked) == 2  # once a hop


def test_the_users_own_master_for_the_login_node_is_used_and_left_running(cluster) -> None:
    folder = Path(tempfile.mkdtemp(prefix="sdu-", dir="/tmp"))
    path = str(folder / "login")
    code = folder / "code"
    code.write_text(f"#!/bin/sh\necho {cluster.totp_code()}\n")
    code.chmod(0o700)
    config = folder / "ssh_config"
    config.write_text(f"Host login\n    ControlPath {path}\n\n" + cluster.ssh_config.read_text())
    env = {**os.environ, "SSH_ASKPASS": str(code), "SSH_ASKPASS_REQUIRE": "force"}
    master = subprocess.run(
        ["ssh", "-F", str(config), "-M", "-fN", "login"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=30,
        env=env,
    )
    assert master.returncode == 0, master.stderr
    check = ["ssh", "-S", path, "-O", "check", "login"]
    try:
        person = Person(cluster.totp_code)
        nodes = make_nodes(["cn01", "cn02"], ssh_config=str(config), prompt=person, **OPENSSH)
        try:
            jump = nodes[0].session.jump
            assert jump.users_master and jump.control_path == path
            assert established_to(cluster.login_port) == 1  # theirs, none of ours
            assert [with_ssh(n, "(* 6 7)").value for n in nodes] == [42, 42]
        finally:
            for n in nodes:
                n.close()
        assert person.asked == []
        assert subprocess.run(check, capture_output=True, timeout=10).returncode == 0
    finally:
        subprocess.run(["ssh", "-S", path, "-O", "exit", "login"], capture_output=True, timeout=10)
        shutil.rmtree(folder, ignore_errors=True)
