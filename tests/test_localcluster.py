"""The local cluster, checked with OpenSSH's own client (not the project's): a login node
at OpenSSH's default limits asking for a TOTP code (or a password), compute nodes that
only the login node reaches, a user CA, and a down() that leaves nothing behind."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from sshdist_kernel.localcluster import TOTP_STEP, LocalCluster

from .conftest import wait_until

pytestmark = [
    pytest.mark.skipif(
        os.geteuid() != 0,
        reason="a local cluster needs root: it writes /etc/pam.d, a cgroup and nft rules",
    ),
    pytest.mark.skipif(
        not (shutil.which("nft") and shutil.which("oathtool")),
        reason="needs nft and oathtool (make test installs nftables, oathtool, libpam-oath)",
    ),
]

SSH_TIMEOUT = 30

ASKPASS = """#!/bin/sh
# ssh's SSH_ASKPASS: note the prompt, answer with the test's code or password.
printf '%s\\n' "$1" >> "$SSHDIST_TEST_PROMPTS"
printf '%s\\n' "$SSHDIST_TEST_ANSWER"
"""


@dataclass
class Ssh:
    returncode: int
    stdout: str
    stderr: str
    prompts: list[str]


@pytest.fixture
def ssh(tmp_path: Path):
    """Run OpenSSH's ssh with no terminal; SSH_ASKPASS answers every prompt with ``answer``
    (the jump's too: ProxyJump's inner ssh inherits the environment)."""
    askpass = tmp_path / "askpass"
    askpass.write_text(ASKPASS)
    askpass.chmod(0o700)
    prompts = tmp_path / "prompts"

    def run(config: Path | str, host: str, *command: str, answer: str = "") -> Ssh:
        prompts.write_text("")
        env = dict(os.environ)
        env.update(
            SSH_ASKPASS=str(askpass),
            SSH_ASKPASS_REQUIRE="force",
            SSHDIST_TEST_ANSWER=answer,
            SSHDIST_TEST_PROMPTS=str(prompts),
        )
        argv = ["ssh", "-F", str(config), "-o", "NumberOfPasswordPrompts=1", "-o"]
        argv += ["ConnectTimeout=10", host, *command]
        done = subprocess.run(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=SSH_TIMEOUT,
            start_new_session=True,  # no controlling terminal: prompts go to SSH_ASKPASS
        )
        asked = [line for line in prompts.read_text().splitlines() if line]
        return Ssh(done.returncode, done.stdout, done.stderr, asked)

    return run


def _codes(secret: str, first_step: int, count: int) -> set[str]:
    out = subprocess.run(
        ["oathtool", "--totp", "-w", str(count - 1), "-N", f"@{first_step * TOTP_STEP}", secret],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout
    return set(out.split())


def _wrong_code(cluster: LocalCluster) -> str:
    """A code pam_oath cannot accept now: none of the window's steps (and a margin) has it."""
    now = int(time.time()) // TOTP_STEP
    window = cluster.totp_window + 2
    taken = _codes(cluster.totp_secret, now - window, 2 * window + 1)
    return next(f"{n:06d}" for n in range(123456, 1000000) if f"{n:06d}" not in taken)


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def _refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            return False
    except ConnectionRefusedError:
        return True


def _pids(cluster: LocalCluster) -> list[int]:
    return [cluster.login_pid, *(n.pid for n in cluster.compute.nodes)]


def _assert_cleaned(cluster: LocalCluster, pids: list[int]) -> None:
    assert all(_gone(pid) for pid in pids), [p for p in pids if not _gone(p)]
    listed = subprocess.run(
        ["nft", "list", "table", "inet", cluster.nft_table], capture_output=True, timeout=10
    )
    assert listed.returncode != 0, "the cluster's nft table is still there"
    assert not cluster.pam_file.exists()
    assert not cluster.cgroup.exists()
    assert _refused(cluster.login_port)
    assert all(_refused(port) for port in cluster.compute_ports.values())


# -- the session cluster: publickey + TOTP, cn01..cn04 ---------------------------------


def test_login_node_runs_at_openssh_default_limits(local_cluster: LocalCluster) -> None:
    config = local_cluster.login_sshd_config
    assert not re.search(r"(?im)^\s*(MaxStartups|MaxSessions)", config.read_text())
    done = subprocess.run(
        [shutil.which("sshd") or "/usr/sbin/sshd", "-T", "-f", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    effective = dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)
    assert effective["maxstartups"] == "10:30:100"
    assert effective["maxsessions"] == "10"
    assert effective["allowtcpforwarding"] == "yes"
    assert effective["usepam"] == "yes"
    assert effective["permitrootlogin"] == "yes"
    assert effective["authenticationmethods"] == "publickey,keyboard-interactive"
    # The running sshd calls itself by the cluster's own PAM service name (its title,
    # "<progname>: <config> [listener] 0 of 10-100 startups", shows the limits too)...
    title = Path(f"/proc/{local_cluster.login_pid}/cmdline").read_bytes().decode()
    assert title.startswith(f"{local_cluster.pam_service}: "), title
    assert "of 10-100 startups" in title
    # ... whose stack asks pam_oath, not the system's /etc/pam.d/sshd.
    assert "pam_oath.so" in local_cluster.pam_file.read_text()
    assert local_cluster.pam_service != "sshd"


def test_every_compute_node_through_the_login_node_with_a_code(
    local_cluster: LocalCluster, ssh
) -> None:
    assert local_cluster.compute_names == ["cn01", "cn02", "cn03", "cn04"]
    for name in local_cluster.compute_names:
        done = ssh(local_cluster.ssh_config, name, "echo", name, answer=local_cluster.totp_code())
        assert done.returncode == 0, done.stderr
        assert done.stdout == f"{name}\n"
        assert len(done.prompts) == 1 and "One-time password" in done.prompts[0]


def test_a_wrong_code_is_refused(local_cluster: LocalCluster, ssh) -> None:
    done = ssh(local_cluster.ssh_config, "cn01", "true", answer=_wrong_code(local_cluster))
    assert done.returncode == 255
    assert "Permission denied" in done.stderr
    assert done.prompts and "One-time password" in done.prompts[0]


def test_a_code_logs_in_once_and_totp_code_gives_fresh_ones(
    local_cluster: LocalCluster, ssh
) -> None:
    code = local_cluster.totp_code()
    first = ssh(local_cluster.ssh_config, "login", "true", answer=code)
    assert first.returncode == 0, first.stderr
    again = ssh(local_cluster.ssh_config, "login", "true", answer=code)
    assert again.returncode == 255 and "Permission denied" in again.stderr
    codes = [local_cluster.totp_code() for _ in range(3)]
    assert len(set(codes)) == 3 and code not in codes
    for fresh in codes:
        done = ssh(local_cluster.ssh_config, "login", "true", answer=fresh)
        assert done.returncode == 0, done.stderr


def test_compute_nodes_refuse_direct_connections(local_cluster: LocalCluster, ssh) -> None:
    for name, port in local_cluster.compute_ports.items():
        assert _refused(port), f"{name}: a direct TCP connection to port {port} was accepted"
    # The compute nodes' own ssh_config (LocalNodes') goes straight there: refused.
    direct = ssh(local_cluster.compute.ssh_config, "cn01", "true")
    assert direct.returncode == 255
    assert "Connection refused" in direct.stderr
    # A shell on the login node reaches them, like the login sshd does for ProxyJump.
    port = local_cluster.compute_ports["cn02"]
    banner = f"exec 3<>/dev/tcp/127.0.0.1/{port} && head -c 7 <&3"
    done = ssh(
        local_cluster.ssh_config, "login", "bash", "-c", repr(banner),
        answer=local_cluster.totp_code(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == "SSH-2.0"


def test_certificates_of_the_user_ca(local_cluster: LocalCluster, ssh, tmp_path: Path) -> None:
    key = tmp_path / "keys" / "user"
    key.parent.mkdir()
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30
    )
    beside = local_cluster.issue_certificate(key.with_suffix(".pub"))
    assert beside == tmp_path / "keys" / "user-cert.pub"
    assert beside.read_text().startswith("ssh-ed25519-cert-v01@openssh.com ")
    beside.unlink()  # ssh would load <key>-cert.pub by itself: only CertificateFile counts
    (tmp_path / "certs").mkdir()
    cert = local_cluster.issue_certificate(
        key.with_suffix(".pub"), certificate=tmp_path / "certs" / "elsewhere"
    )
    shown = subprocess.run(
        ["ssh-keygen", "-L", "-f", str(cert)], capture_output=True, text=True, timeout=30
    ).stdout
    assert re.search(rf"Principals:\s*\n\s*{local_cluster.user}\n", shown), shown
    ports = {"certlogin": local_cluster.login_port, "certcn": local_cluster.compute_ports["cn01"]}

    def config(with_cert: bool) -> Path:
        # The key is in no authorized_keys: only its certificate can let it in.  The
        # cluster's blocks come along for ProxyJump login (ssh passes -F to the jump).
        blocks = [local_cluster.ssh_config.read_text()]
        for alias, port in ports.items():
            blocks.append(
                f"Host {alias}\n    HostName 127.0.0.1\n    Port {port}\n"
                f"    User {local_cluster.user}\n    IdentityFile {key}\n"
                + (f"    CertificateFile {cert}\n" if with_cert else "")
                + "    IdentitiesOnly yes\n"
                f"    UserKnownHostsFile {local_cluster.known_hosts}\n"
                "    StrictHostKeyChecking yes\n"
                + ("    ProxyJump login\n" if alias == "certcn" else "")
            )
        path = tmp_path / f"ssh_config-{with_cert}"
        path.write_text("\n".join(blocks))
        return path

    with_cert, without = config(True), config(False)
    refused = ssh(without, "certlogin", "true")
    assert refused.returncode == 255 and "Permission denied (publickey)" in refused.stderr
    assert not refused.prompts  # no code is asked before the key is accepted
    done = ssh(with_cert, "certlogin", "echo", "in", answer=local_cluster.totp_code())
    assert done.returncode == 0 and done.stdout == "in\n", done.stderr
    refused = ssh(without, "certcn", "true", answer=local_cluster.totp_code())
    assert refused.returncode == 255 and "Permission denied (publickey)" in refused.stderr
    done = ssh(with_cert, "certcn", "echo", "in", answer=local_cluster.totp_code())
    assert done.returncode == 0 and done.stdout == "in\n", done.stderr


# -- clusters of their own: the other authentication modes, and down() ------------------


def _shadow() -> str:
    return hashlib.sha256(Path("/etc/shadow").read_bytes()).hexdigest()


def test_password_mode(tmp_path: Path, ssh) -> None:
    shadow = _shadow()
    cluster = LocalCluster.up(tmp_path / "cluster", compute=1, auth="password")
    pids = _pids(cluster)
    try:
        assert cluster.password and cluster.totp_secret is None
        assert "pam_exec.so expose_authtok" in cluster.pam_file.read_text()
        done = ssh(cluster.ssh_config, "cn01", "echo", "in", answer=cluster.password)
        assert done.returncode == 0 and done.stdout == "in\n", done.stderr
        assert done.prompts and "password" in done.prompts[0]
        wrong = ssh(cluster.ssh_config, "login", "true", answer=cluster.password + "x")
        assert wrong.returncode == 255 and "Permission denied" in wrong.stderr
        empty = ssh(cluster.ssh_config, "login", "true", answer="")
        assert empty.returncode == 255
    finally:
        cluster.down()
    _assert_cleaned(cluster, pids)
    assert _shadow() == shadow  # the system's passwords were neither used nor changed


def test_totp_only_mode_and_codes_past_the_window(tmp_path: Path, ssh) -> None:
    # window=1: two fresh codes (this step's and the next), then totp_code() makes
    # pam_oath forget the used ones and starts again: logins never run out.
    cluster = LocalCluster.up(tmp_path / "cluster", compute=1, auth="totp", totp_window=1)
    pids = _pids(cluster)
    try:
        for _ in range(4):
            done = ssh(cluster.ssh_config, "cn01", "echo", "in", answer=cluster.totp_code())
            assert done.returncode == 0 and done.stdout == "in\n", done.stderr
        log = (cluster.login_dir / "sshd.log").read_text()
        assert "Accepted keyboard-interactive/pam" in log
        assert "Accepted publickey" not in log
        wrong = ssh(cluster.ssh_config, "login", "true", answer=_wrong_code(cluster))
        assert wrong.returncode == 255
    finally:
        cluster.down()
    _assert_cleaned(cluster, pids)


def test_publickey_mode_and_down_ends_sessions(tmp_path: Path, ssh) -> None:
    cluster = LocalCluster.up(tmp_path / "cluster", compute=2, auth="publickey")
    pids = _pids(cluster)
    session = None
    try:
        done = ssh(cluster.ssh_config, "cn02", "echo", "in")
        assert done.returncode == 0 and done.stdout == "in\n", done.stderr
        assert not done.prompts
        # A session left open on the login node: down() must end it too.
        session = subprocess.Popen(
            ["ssh", "-F", str(cluster.ssh_config), "login", "sleep 300"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        procs = cluster.cgroup / "cgroup.procs"
        wait_until(
            lambda: any(
                Path(f"/proc/{pid}/comm").read_text().strip() == "sleep"
                for pid in procs.read_text().split()
                if Path(f"/proc/{pid}/comm").exists()
            ),
            15,
            "the login session's sleep to start",
        )
    finally:
        cluster.down()
        if session is not None:
            try:
                session.wait(15)
            finally:
                session.kill()
    _assert_cleaned(cluster, pids)


def test_cli_cluster_up_status_down(tmp_path: Path, ssh) -> None:
    where = str(tmp_path / "cluster")

    def sshdist(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "sshdist_kernel.cli", "cluster", *args, "--dir", where],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )

    up = sshdist("up", "1")
    try:
        assert up.returncode == 0, up.stderr
        assert f"ssh -F {where}/ssh_config cn01" in up.stdout
        secret = LocalCluster(where).totp_secret
        assert f"oathtool --totp {secret}" in up.stdout
        code = subprocess.run(
            ["oathtool", "--totp", secret], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        done = ssh(f"{where}/ssh_config", "cn01", "echo", "in", answer=code)
        assert done.returncode == 0 and done.stdout == "in\n", done.stderr
        status = sshdist("status")
        assert status.stdout.count("running") == 2, status.stdout
        again = sshdist("up", "1")
        assert again.returncode == 1 and "already running" in again.stderr
    finally:
        down = sshdist("down")
    assert down.returncode == 0 and "stopped" in down.stdout
    assert sshdist("status").stdout.count("stopped") == 2
    cluster = LocalCluster(where)
    assert not cluster.pam_file.exists() and not cluster.cgroup.exists()
