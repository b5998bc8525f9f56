"""Nodes behind a login node as real clusters run one: OpenSSH's default limits, a key
and then a one-time code (pam_oath), certificates, password and code-only hosts.  The
login node is logged in to once for all its nodes, and its code asked once."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from sshdist_kernel import AuthenticationError, make_node, make_nodes, with_ssh
from sshdist_kernel.localnodes import established_to
from sshdist_kernel.session import JUMPS

from .conftest import start_kernel, wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="a local cluster needs root")


class Person:
    """A prompt that answers with the cluster's next code and notes every question."""

    def __init__(self, answer) -> None:
        self.answer = answer
        self.asked: list[tuple[str, bool, str]] = []

    def __call__(self, text: str, echo: bool) -> str:
        self.asked.append((text, echo, threading.current_thread().name))
        return self.answer()


@pytest.fixture
def cluster(local_cluster):
    yield local_cluster
    wait_until(lambda: not JUMPS._entries, 5, "the login connection to close")
    # A kernel or a terminal child of the test may still be closing its own.
    wait_until(lambda: established_to(local_cluster.login_port) == 0, 10, "the logins to end")


def test_64_nodes_behind_a_2fa_login_node_one_connection_one_code(tmp_path: Path) -> None:
    from sshdist_kernel.localcluster import LocalCluster

    big = LocalCluster.up(tmp_path / "big", compute=64)
    try:
        person = Person(big.totp_code)
        nodes = make_nodes(big.compute_names, ssh_config=str(big.ssh_config), prompt=person)
        try:
            assert len(nodes) == 64
            assert established_to(big.login_port) == 1
            assert [with_ssh(n, "(+ 1 2)").value for n in nodes] == [3] * 64
        finally:
            for n in nodes:
                n.close()
        assert len(person.asked) == 1
        text, echo, thread = person.asked[0]
        assert text.startswith("(root@login) ") and "One-time password" in text
        assert echo is False
        assert thread == threading.current_thread().name  # asked on the caller's thread
    finally:
        big.down()


def test_a_wrong_code_is_an_authentication_error_naming_the_method(cluster) -> None:
    person = Person(lambda: "000000")
    with pytest.raises(AuthenticationError) as caught:
        make_node("cn01", ssh_config=str(cluster.ssh_config), prompt=person)
    message = str(caught.value)
    assert "login (" in message and "accepted publickey" in message
    assert 'keyboard-interactive: the answer to "One-time password' in message
    assert "refused 3 time(s)" in message and "IdentityFile" not in message
    assert len(person.asked) == 3  # NumberOfPasswordPrompts, as ssh asks


def test_no_one_to_ask_is_a_clear_error_not_a_hang(cluster) -> None:
    with pytest.raises(AuthenticationError) as caught:
        make_nodes(["cn01", "cn02"], ssh_config=str(cluster.ssh_config), prompt=None)
    message = str(caught.value)
    assert "accepted publickey" in message and "asked for a one-time code" in message
    assert "prompt=" in message


def _broken_prompt(text: str, echo: bool) -> str:
    raise RuntimeError("the dialog broke")


@pytest.mark.parametrize(
    ("prompt", "why"),
    [
        (_broken_prompt, "the prompt failed: RuntimeError: the dialog broke"),
        (lambda text, echo: None, "the prompt gave no answer"),
        (lambda text, echo: 123456, "the prompt returned an int, not a str"),
    ],
)
def test_a_prompt_that_fails_is_named_as_the_prompt_not_as_the_handshake(
    cluster, prompt, why: str
) -> None:
    """They were 'SSH handshake with login failed: ' and then the exception's text:
    empty for None, "object of type 'int' has no len()" for a number."""
    made = make_nodes(
        ["cn01", "cn02"], ssh_config=str(cluster.ssh_config), prompt=prompt, on_error="skip"
    )
    assert len(made) == 0 and len(set(made.failed.values())) == 1
    message = made.failed["cn01"]
    assert "login (" in message and "asked for a one-time code" in message, message
    assert why in message and "handshake" not in message, message


def test_batch_mode_asks_nobody(cluster, tmp_path: Path) -> None:
    config = tmp_path / "ssh_config"
    config.write_text("BatchMode yes\n" + cluster.ssh_config.read_text())
    person = Person(cluster.totp_code)
    with pytest.raises(AuthenticationError, match="BatchMode is on"):
        make_node("login", ssh_config=str(config), prompt=person)
    assert person.asked == []


def test_ctrl_c_while_the_code_is_asked_leaves_nothing_behind(cluster) -> None:
    def interrupted(text: str, echo: bool) -> str:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        make_nodes(cluster.compute_names, ssh_config=str(cluster.ssh_config), prompt=interrupted)
    wait_until(lambda: established_to(cluster.login_port) == 0, 5, "the login connection to go")
    # The next call asks again and works.
    nodes = make_nodes(
        cluster.compute_names, ssh_config=str(cluster.ssh_config), prompt=Person(cluster.totp_code)
    )
    assert [with_ssh(n, "(* 6 7)").value for n in nodes] == [42] * len(nodes)
    for n in nodes:
        n.close()


def certified_key(cluster, tmp_path: Path) -> tuple[Path, Path, Path, str]:
    """A new key, its certificate from the cluster's CA, and an ssh_config (written,
    and its text) naming the key and not the certificate."""
    key = tmp_path / "id_certified"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30
    )
    cert = cluster.issue_certificate(key.with_suffix(".pub"), certificate=tmp_path / "issued.pub")
    base = cluster.ssh_config.read_text().replace(str(cluster.identity), str(key))
    config = tmp_path / "ssh_config"
    config.write_text(base)
    return key, cert, config, base


def test_a_certificate_named_by_certificatefile_logs_in(cluster, tmp_path: Path) -> None:
    key, cert, config, base = certified_key(cluster, tmp_path)
    person = Person(cluster.totp_code)
    with pytest.raises(AuthenticationError, match=f"publickey: tried {key}"):
        make_node("login", ssh_config=str(config), prompt=person)  # the key alone: refused
    config.write_text(f"Host *\n    CertificateFile {cert}\n\n" + base)
    node = make_node("login", ssh_config=str(config), prompt=person)
    try:
        assert with_ssh(node, "(+ 1 2)").value == 3
    finally:
        node.close()


@pytest.fixture(params=["password", "totp"])
def other_cluster(request, tmp_path: Path) -> Iterator:
    from sshdist_kernel.localcluster import LocalCluster

    made = LocalCluster.up(tmp_path / request.param, compute=2, auth=request.param)
    yield made
    made.down()


def test_password_and_code_only_login_nodes(other_cluster) -> None:
    answer = other_cluster.password or other_cluster.totp_code
    person = Person(answer if callable(answer) else lambda: answer)
    nodes = make_nodes(["cn01", "cn02"], ssh_config=str(other_cluster.ssh_config), prompt=person)
    try:
        assert [with_ssh(n, "(+ 1 2)").value for n in nodes] == [3, 3]
    finally:
        for n in nodes:
            n.close()
    assert len(person.asked) == 1
    if other_cluster.password:
        assert person.asked[0][0] == "root@login's password: "
    wrong = Person(lambda: "not it")
    with pytest.raises(AuthenticationError, match="refused 3 time"):
        make_node("login", ssh_config=str(other_cluster.ssh_config), prompt=wrong)


def _answer_code_requests(kc, msg_id: str, code) -> tuple[dict, list[dict]]:
    """Answer each input_request with the next code until ``msg_id``'s reply comes;
    the reply and the requests."""
    import queue

    requests = []
    while True:
        try:
            request = kc.get_stdin_msg(timeout=0.2)
        except queue.Empty:
            request = None
        if request is not None and request["msg_type"] == "input_request":
            requests.append(request["content"])
            kc.input(code())
        try:
            reply = kc.get_shell_msg(timeout=0.2)
        except queue.Empty:
            continue
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply["content"], requests


def test_the_guile_kernel_asks_for_the_code_in_the_first_cell_once(
    cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sshdist_kernel import kernelspec

    kernelspec.install("cn01", prefix=str(tmp_path), ssh_config=str(cluster.ssh_config))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "share" / "jupyter"))
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "data"))
    km, kc = start_kernel("sshdist-cn01")
    try:
        msg_id = kc.execute("(+ 1 2)", allow_stdin=False)  # nbconvert's way: no input
        reply, requests = _answer_code_requests(kc, msg_id, cluster.totp_code)
        assert reply["status"] == "error" and requests == []
        assert "(root@login) One-time password" not in reply["evalue"]
        assert "from a front end that takes input" in reply["evalue"]
        assert "password box" in reply["evalue"] and "prompt=" not in reply["evalue"]
        msg_id = kc.execute("(+ 1 2)", allow_stdin=True)
        reply, requests = _answer_code_requests(kc, msg_id, cluster.totp_code)
        assert reply["status"] == "ok", reply
        assert len(requests) == 1 and requests[0]["password"] is True
        assert "(root@login) One-time password" in requests[0]["prompt"]
        msg_id = kc.execute("(* 6 7)", allow_stdin=True)
        reply, requests = _answer_code_requests(kc, msg_id, cluster.totp_code)
        assert reply["status"] == "ok" and requests == []
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_the_magics_ask_for_the_code_through_the_notebook_once(cluster) -> None:
    km, kc = start_kernel("python3")
    try:
        hosts = " ".join(cluster.compute_names)
        code = f"%load_ext sshdist_magics\n%nodes -o nodes -F {cluster.ssh_config} {hosts}"
        msg_id = kc.execute(code, allow_stdin=True)
        reply, requests = _answer_code_requests(kc, msg_id, cluster.totp_code)
        assert reply["status"] == "ok", reply
        assert len(requests) == 1 and requests[0]["password"] is True
        assert "(root@login) One-time password" in requests[0]["prompt"]
        msg_id = kc.execute("print(len(nodes), [n.name for n in nodes][:2])")
        reply, _ = _answer_code_requests(kc, msg_id, cluster.totp_code)
        assert reply["status"] == "ok"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_a_terminal_asks_with_getpass_and_ctrl_c_there_stops_the_call(cluster) -> None:
    import sys

    import pexpect

    script = (
        "from sshdist_kernel import make_nodes, with_ssh\n"
        f"nodes = make_nodes(['cn01', 'cn02'], ssh_config={str(cluster.ssh_config)!r})\n"
        "print('values', [with_ssh(n, '(+ 1 2)').value for n in nodes])\n"
    )
    child = pexpect.spawn(sys.executable, ["-c", script], encoding="utf-8", timeout=30)
    try:
        child.expect(r"\(root@login\) One-time password \(OATH\) for `root': ")
        child.sendline(cluster.totp_code())
        child.expect(r"values \[3, 3\]")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    child = pexpect.spawn(sys.executable, ["-c", script], encoding="utf-8", timeout=30)
    try:
        child.expect("One-time password")
        child.sendintr()  # Ctrl-C at the question
        child.expect("KeyboardInterrupt")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus != 0


def test_an_expired_certificate_is_named_expired(cluster, tmp_path: Path) -> None:
    key, _, config, base = certified_key(cluster, tmp_path)
    expired = cluster.issue_certificate(
        key.with_suffix(".pub"), certificate=tmp_path / "old.pub", validity="-2d:-1d"
    )
    config.write_text(f"Host *\n    CertificateFile {expired}\n\n" + base)
    with pytest.raises(AuthenticationError) as caught:
        make_node("login", ssh_config=str(config), prompt=Person(cluster.totp_code))
    assert f"could not use certificate {expired} (expired on 20" in str(caught.value)
    assert "UTC)" in str(caught.value)
