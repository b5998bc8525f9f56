"""What local sshds share: starting and stopping their processes (and what runs below
them), probing their ports, making keys, and the directory of client files (key,
ssh_config, known_hosts) that reach them.  ``LocalNodes`` and ``LocalCluster`` use it.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from .controlmaster import alive

START_TIMEOUT = 10.0


class LocalNodesError(RuntimeError):
    """The local nodes could not be started, found or stopped."""


def _alive(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)  # reap our own children so they are not zombies
        if done:
            return False
    except ChildProcessError:
        pass
    return alive(pid)  # a zombie whose parent exited is dead, waiting for init to reap it


def _children() -> dict[int, list[int]]:
    """Each process's children (from ``/proc``), by parent pid."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    return children


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid``: sshd puts each connection in a session of its own,
    so stopping a node's process group would leave its connections up."""
    children = _children()
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def established_to(port: int) -> int:
    """TCP connections on this machine to 127.0.0.1:``port`` that are up (from
    ``/proc/net/tcp``): how many logins a local sshd holds, without asking it."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "01" and int(fields[2].split(":")[1], 16) == port:
            count += 1
    return count


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sshd() -> str:
    path = shutil.which("sshd") or "/usr/sbin/sshd"
    if not os.path.isfile(path):
        raise LocalNodesError("sshd is not installed: apt-get install openssh-server")
    return path


def _spawn(argv: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start an sshd (``-D -e``) in a session of its own, logging to ``log_path``."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )


def _wait_started(proc: subprocess.Popen[bytes], port: int) -> bool:
    """Whether ``proc`` listens on ``port`` within ``START_TIMEOUT``; if not, it is killed."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and proc.poll() is None:
        if _port_open(port):
            return True
        time.sleep(0.02)
    if proc.poll() is None:
        proc.kill()
        proc.wait(5)
    return False


def _stop_tree(pid: int, sig: int = signal.SIGTERM) -> None:
    """Send ``sig`` to ``pid`` and every process below it; SIGKILL ``pid`` after 5 s."""
    for each in [pid, *_descendants(pid)]:
        try:
            os.kill(each, sig)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)


def _keygen(path: Path, comment: str) -> None:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
        )
        if done.returncode != 0:
            raise LocalNodesError(f"ssh-keygen could not write {path}: {done.stderr.strip()}")


class SshdDir:
    """A directory of local sshds for one user, and the client files that reach them."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory).expanduser().resolve()
        self.user = getpass.getuser()

    @property
    def ssh_config(self) -> Path:
        return self.dir / "ssh_config"

    @property
    def known_hosts(self) -> Path:
        return self.dir / "known_hosts"

    @property
    def identity(self) -> Path:
        """The client's private key, which every sshd here accepts."""
        return self.dir / "id_ed25519"

    def _stop_unnamed_sshds(self) -> None:
        """Stop this user's sshds configured in this directory that its state file does
        not name: all of them once the directory was removed while they ran (a
        ``TemporaryDirectory`` left without ``down()``; the owner's watcher then finds no
        state).  Found by their command line, ``sshd -D -e -f DIR/NAME/sshd_config``
        (one level down: not the sshds of another directory inside this one)."""
        for entry in Path("/proc").iterdir():
            try:
                if not entry.name.isdigit() or entry.stat().st_uid != os.getuid():
                    continue
                line = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            # sshd retitles itself ("sshd: /usr/sbin/sshd -D -e -f PATH [listener] ..."):
            # its arguments are words of one string then, not NUL-separated.
            words = line.replace("\0", " ")
            config = Path(words.partition(" -f ")[2].split(" [")[0].strip())
            if (
                " -D " in words
                and config.name == "sshd_config"
                and config.parent.parent == self.dir
            ):
                _stop_tree(int(entry.name))

    def _make_dir(self) -> None:
        # Folders made here are the user's alone, whatever the umask: the default's
        # parent is ~/.cache/sshdist, where a node keeps its compiled loop only if
        # nobody else can write there.
        for folder in reversed([self.dir, *self.dir.parents]):
            if not folder.exists():
                folder.mkdir(mode=0o700)
                folder.chmod(0o700)
        self.dir.chmod(0o700)

    def _host(
        self, name: str, port: int, *, client: bool = True, known_hosts: Path | None = None
    ) -> str:
        """An ssh_config block for ``name`` at 127.0.0.1:``port``; ``client``: with the
        user, key and known_hosts (else a ``Host`` pattern below gives them)."""
        block = f"Host {name}\n    HostName 127.0.0.1\n    Port {port}\n"
        return block + self._client(known_hosts) if client else block

    def _client(self, known_hosts: Path | None = None) -> str:
        return (
            f"    User {self.user}\n"
            f"    IdentityFile {self.identity}\n"
            "    IdentitiesOnly yes\n"
            f"    UserKnownHostsFile {known_hosts or self.known_hosts}\n"
            "    StrictHostKeyChecking yes\n"
        )


def _known_host(port: int, home: Path) -> str:
    """The known_hosts line of the sshd at 127.0.0.1:``port`` whose host key is in ``home``."""
    pub = (home / "ssh_host_ed25519_key.pub").read_text().split()
    return f"[127.0.0.1]:{port} {pub[0]} {pub[1]}\n"
