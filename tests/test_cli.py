"""The ``sshdist`` command as a user runs it: local nodes up/status/down, and rrepl."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sshdist_kernel.localnodes import LocalNodes


def sshdist(*args: str, stdin: str = "", timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sshdist_kernel.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_nodes_up_status_down(tmp_path: Path) -> None:
    where = str(tmp_path / "nodes")
    up = sshdist("nodes", "up", "2", "--dir", where)
    try:
        assert up.returncode == 0, up.stderr
        assert "node1" in up.stdout and "node2" in up.stdout
        assert f"ssh -F {where}/ssh_config node1" in up.stdout
        # Meant to outlive the command: no watcher stops them when it exits.
        assert not (tmp_path / "nodes" / "ownerwatch.log").exists()
        ssh = subprocess.run(
            ["ssh", "-F", f"{where}/ssh_config", "node2", "echo", "reached"],
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
        assert ssh.stdout == "reached\n", ssh.stderr
        status = sshdist("nodes", "status", "--dir", where)
        assert status.stdout.count("running") == 2
        again = sshdist("nodes", "up", "2", "--dir", where)
        assert again.returncode == 1 and "already running" in again.stderr
    finally:
        down = sshdist("nodes", "down", "--dir", where)
    assert down.returncode == 0 and "stopped 2" in down.stdout
    assert all(not n.is_running() for n in LocalNodes(where).nodes)
    assert sshdist("nodes", "status", "--dir", where).stdout.count("stopped") == 2


def test_rrepl_prints_values_like_the_guile_repl(ssh_config: str) -> None:
    session = sshdist(
        "rrepl",
        "node1",
        "-F",
        ssh_config,
        stdin='(+ 1 2)\n(display "hi")\n(car 1)\n(define (f x)\n  (* x 2))\n(f 21)\n',
    )
    assert session.returncode == 0, session.stderr
    assert session.stdout == "$1 = 3\nhi$2 = 42\n"
    assert ";;; wrong-type-arg: In procedure car" in session.stderr


def test_rrepl_guile_runs_that_guile_and_a_missing_one_is_one_clear_line(
    ssh_config: str,
) -> None:
    if shutil.which("guile-2.2") is None:
        pytest.skip("no guile-2.2 here (make test installs Debian's guile-2.2)")
    session = sshdist(
        "rrepl", "node1", "-F", ssh_config, "--guile", "guile-2.2", stdin="(version)\n"
    )
    assert session.returncode == 0, session.stderr
    assert re.fullmatch(r'\$1 = "2\.2\.\d+"\n', session.stdout)
    missing = sshdist("rrepl", "node1", "-F", ssh_config, "--guile", "/opt/guile/bin/guile")
    assert missing.returncode == 1
    assert missing.stderr.startswith(
        "sshdist: Guile command '/opt/guile/bin/guile' is not installed on node1 "
    )


def test_rrepl_to_an_unreachable_host_is_one_clear_line(tmp_path: Path) -> None:
    result = sshdist("rrepl", "127.0.0.1:1", "-F", "/dev/null")
    assert result.returncode == 1
    assert re.fullmatch(r"sshdist: \S+@127\.0\.0\.1:1 refused the connection: .*\n", result.stderr)


def test_nodes_up_makes_its_folders_the_users_alone_whatever_the_umask(tmp_path: Path) -> None:
    where = tmp_path / "cache" / "sshdist" / "nodes"
    up = subprocess.run(
        [
            "bash",
            "-c",
            f"umask 002; exec {sys.executable} -m sshdist_kernel.cli nodes up 1 --dir {where}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    try:
        assert up.returncode == 0, up.stderr
        # ~/.cache/sshdist is where a node keeps its compiled loop, if nobody else can write.
        for folder in (tmp_path / "cache", tmp_path / "cache" / "sshdist", where):
            assert folder.stat().st_mode & 0o777 == 0o700, folder
    finally:
        sshdist("nodes", "down", "--dir", str(where))
