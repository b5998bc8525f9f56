"""OpenSSH ControlMasters of ours: where their sockets live, starting one (its prompts
through the askpass bridge), checking and stopping it, and how many sessions of this
process use each, so the last one to go stops it.  Every ``ssh`` run here is bounded
in time and runs in a session of its own (a Ctrl-C meant for Python does not end it).
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import IO

from .askpassbridge import Askpass
from .errors import AuthenticationError, ConnectError, HostKeyError, NodeError
from .sshconfig import SessionOptions

CONTROL_PERSIST = 600
"""Seconds a master of ours outlives its last channel when nobody stops it (a Python
process that died without closing its sessions): ControlPersist."""

KEEPALIVE = 15
"""ServerAliveInterval of our masters, as paramiko's keepalive (3 unanswered: dropped)."""

CHECK_TIMEOUT = 3.0
"""Seconds ``ssh -O check``/``-O exit`` get before the master counts as hung."""

SOCKET_PATH_MAX = 100
"""The longest control socket path we make: a Unix socket's path holds 107 bytes, and
ssh binds a temporary name 17 bytes longer first."""

_OWN = re.compile(r"Master running \(pid=(\d+)\)")


# -- where the sockets live -----------------------------------------------------------


def _private_dir(path: Path) -> Path:
    """``path``, made (with missing parents) mode 700, refused unless ours alone."""
    for folder in reversed([path, *path.parents]):
        if not folder.exists():
            try:
                folder.mkdir(mode=0o700)
            except FileExistsError:
                pass
    st = path.lstat()
    if not path.is_dir() or path.is_symlink() or st.st_uid != os.getuid():
        raise OSError(f"{path} is not a directory of this user's")
    if st.st_mode & 0o777 != 0o700:
        path.chmod(0o700)
    return path


def control_dir() -> Path:
    """The private (mode 700) directory of our control and askpass sockets:
    ``$SSHDIST_CONTROL_DIR``, else ``$XDG_RUNTIME_DIR/sshdist/cm``, else
    ``~/.cache/sshdist/cm``, else one under the temporary directory; the first whose
    path is short enough for a Unix socket."""
    candidates = []
    if os.environ.get("SSHDIST_CONTROL_DIR"):
        candidates.append(Path(os.environ["SSHDIST_CONTROL_DIR"]))
    if os.environ.get("XDG_RUNTIME_DIR"):
        candidates.append(Path(os.environ["XDG_RUNTIME_DIR"]) / "sshdist" / "cm")
    candidates.append(Path("~/.cache/sshdist/cm").expanduser())
    candidates.append(Path(tempfile.gettempdir()) / f"sshdist-{os.getuid()}" / "cm")
    reasons = []
    for folder in candidates:
        if len(os.fsencode(folder)) + 18 > SOCKET_PATH_MAX:
            reasons.append(f"{folder}: too long for a socket path")
            continue
        try:
            return _private_dir(folder)
        except OSError as exc:
            reasons.append(f"{folder}: {exc}")
    raise ConnectError("no private directory for OpenSSH's control sockets: " + "; ".join(reasons))


def ssh_binary() -> str:
    """The ``ssh`` on PATH; ``ConnectError`` when there is none."""
    path = shutil.which("ssh")
    if path is None:
        raise ConnectError(
            "OpenSSH's ssh client is not installed (no ssh on PATH): install it "
            "(apt-get install openssh-client), or use transport='paramiko'"
        )
    return path


# -- processes, bounded ---------------------------------------------------------------


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (Linux's /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # there, but not ours to read
        return True
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _stopped(pid: int) -> bool:
    """Whether process ``pid`` is stopped (SIGSTOP, or a debugger's)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] in ("T", "t")


def _is_master(pid: int, path: str) -> bool:
    """Whether ``pid`` is (still) the ssh master of ``path``, not a process that got
    its number after it ended."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return alive(pid)
    return alive(pid) and f"ControlPath={path}".encode() in argv


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        process.wait(CHECK_TIMEOUT)
    except subprocess.TimeoutExpired:
        pass


def run_bounded(args: list[str], timeout: float) -> tuple[int, str]:
    """Run ``args`` to its end within ``timeout`` seconds, in a session of its own:
    (status, stdout + stderr); status -1 when it was killed for time."""
    process = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        out, _ = process.communicate(timeout=max(timeout, 0.05))
    except subprocess.TimeoutExpired:
        _kill_group(process)
        process.communicate()
        return -1, ""
    except BaseException:
        _kill_group(process)
        raise
    return process.returncode, out.decode("utf-8", "replace")


def _read(file: IO[bytes]) -> str:
    file.seek(0)
    return file.read().decode("utf-8", "replace")


def check_master(ssh: str, path: str, alias: str, timeout: float) -> int | None:
    """The pid of the master answering at ``path`` within ``timeout``, or None."""
    if not os.path.exists(path):
        return None
    args = [ssh, "-F", "none", "-o", f"ControlPath={path}", "-O", "check", "--", alias]
    status, out = run_bounded(args, timeout)
    found = _OWN.search(out)
    return int(found[1]) if status == 0 and found else None


# -- masters of ours, counted -----------------------------------------------------------


class Master:
    """One control path of ours: the master's pid and how many sessions use it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.pid: int | None = None
        self.users = 0
        self.lock = threading.Lock()


_masters: dict[str, Master] = {}
_masters_lock = threading.Lock()


def master_for(path: str) -> Master:
    with _masters_lock:
        master = _masters.get(path)
        if master is None:
            master = _masters[path] = Master(path)
        return master


def release_master(ssh: str, master: Master, alias: str) -> None:
    """One session fewer on ``master``; the last one stops it."""
    with master.lock:  # held by a connect or a release, each bounded
        master.users -= 1
        if master.users <= 0 and master.pid is not None:
            stop_master(ssh, master.path, master.pid, alias)
            master.pid = None
            master.users = 0


@atexit.register
def _stop_masters_left() -> None:
    """At exit, stop the masters of sessions nobody closed (else ControlPersist would)."""
    with _masters_lock:
        left = [m for m in _masters.values() if m.pid is not None]
    ssh = shutil.which("ssh") or "ssh"
    for master in left:
        stop_master(ssh, master.path, master.pid, "sshdist")


def stop_master(ssh: str, path: str, pid: int, alias: str) -> None:
    """Stop our master at ``path``: ``ssh -O exit``, SIGKILL if it hangs.  A stopped
    master (SIGSTOP) is killed at once, and one that did not take the exit is not
    waited for: a second spent for nothing each (a node whose master stopped
    answering is closed this way before it reconnects)."""
    if _is_master(pid, path):
        status = -1
        if not _stopped(pid):
            status, _ = run_bounded(
                [ssh, "-F", "none", "-o", f"ControlPath={path}", "-O", "exit", "--", alias], 1.0
            )
        end = time.monotonic() + (1.0 if status == 0 else 0.0)
        while alive(pid) and time.monotonic() < end:
            time.sleep(0.01)
        if alive(pid) and _is_master(pid, path):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            end = time.monotonic() + 1.0
            while alive(pid) and time.monotonic() < end:
                time.sleep(0.01)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def start_master(
    ssh: str, args: list[str], o: SessionOptions, path: str, deadline: float, seconds: float
) -> int:
    """Run ``args`` (an ``ssh -M -N -f`` of ``o``'s host at ``path``) until it forks
    its master, asking its questions of ``o.prompt`` (none: BatchMode); the master's
    pid.  The time a person takes to answer does not count against ``deadline``."""
    try:
        os.unlink(path)  # a stale socket would make ssh give up multiplexing
    except FileNotFoundError:
        pass
    env = dict(os.environ)
    askpass = None
    if o.prompt is None:
        args = [*args[:1], "-o", "BatchMode=yes", *args[1:]]
    else:
        askpass = Askpass(o.prompt, control_dir())
        env.update(askpass.env(control_dir()))
    # A file, not a pipe, for ssh's words: a ProxyCommand keeps ssh's stderr open for
    # as long as the master lives, so a pipe would never end.
    with tempfile.TemporaryFile(dir=control_dir()) as stderr:
        try:
            process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
                env=env,
            )
        except OSError as exc:
            if askpass is not None:
                askpass.close()
            raise ConnectError(f"could not run {ssh} for {o.target}: {exc}") from None
        try:
            while True:
                asked = askpass.seconds_asking() if askpass is not None else 0.0
                left = deadline + asked - time.monotonic()
                if left <= 0:
                    _kill_group(process)
                    err = _words(_read(stderr))
                    raise ConnectError(
                        f"ssh could not connect to {o.target} within {seconds:g} s"
                        + (f"; ssh said: {err}" if err else "")
                    )
                try:
                    process.wait(timeout=min(left, 0.25))
                    break
                except subprocess.TimeoutExpired:
                    continue
        except BaseException:
            _kill_group(process)
            raise
        finally:
            if askpass is not None:
                askpass.close()
        err = _read(stderr)
    if process.returncode != 0:
        raise ssh_error(o, process.returncode, err, askpass.unanswered if askpass else None)
    pid = check_master(ssh, path, o.alias, CHECK_TIMEOUT)
    if pid is None:
        raise ConnectError(
            f"ssh connected to {o.target}, but its control socket {path} does not "
            f"answer; ssh said: {_words(err) or 'nothing'}"
        )
    return pid


# -- errors -----------------------------------------------------------------------------

_HOST_KEY = re.compile(
    r"Host key verification failed|HOST IDENTIFICATION HAS CHANGED|host key is known|"
    r"REVOKED HOST KEY|Host key for .* has changed|key .* is revoked",
    re.IGNORECASE,
)
_AUTH = re.compile(
    r"Permission denied|Too many authentication failures|"
    r"No more authentication methods|Authentication failed",
    re.IGNORECASE,
)
_ASKING_METHODS = re.compile(r"Permission denied \([^)]*(keyboard-interactive|password)")


def _words(stderr: str) -> str:
    """OpenSSH's stderr without its banners of @ signs and blank lines."""
    lines = (line.strip().strip("@").strip() for line in stderr.splitlines())
    return "\n  ".join(line for line in lines if line)


def ssh_error(
    o: SessionOptions, status: int, stderr: str, unanswered: str | None = None
) -> NodeError:
    """The project's error for an ``ssh`` that failed to connect to ``o``'s host;
    ``unanswered``: a question of ssh's that nobody could answer, and why."""
    words = _words(stderr) or f"ssh exited with status {status} and said nothing"
    if _HOST_KEY.search(stderr):
        found = re.search(r"SHA256:[A-Za-z0-9+/=]+", stderr)
        return HostKeyError(
            f"the host key of {o.target} was refused by OpenSSH's ssh: nothing was sent. "
            f"ssh said: {words}",
            o.known_hosts_name,
            found[0] if found else "",
        )
    if _AUTH.search(stderr):
        why = f"{o.target} refused authentication; ssh said: {words}"
        if unanswered or (o.prompt is None and _ASKING_METHODS.search(stderr)):
            why += (
                f". It asks for a one-time code or password and nobody could answer "
                f"({unanswered or 'prompt=None: ssh ran with BatchMode=yes'}): pass "
                "prompt=lambda text, echo: ... to make_node/make_nodes"
            )
        return AuthenticationError(why)
    if _DROPPED.search(stderr):
        return DroppedBeforeBanner(f"ssh could not connect to {o.target}; ssh said: {words}")
    return ConnectError(f"ssh could not connect to {o.target}; ssh said: {words}")


_DROPPED = re.compile(
    r"kex_exchange_identification: (Connection closed|read: Connection reset)|"
    r"connect to host .* Connection reset by peer|"  # accepted, then dropped at once
    # reset before ssh's own banner went out: the only line ssh prints then
    r"^Connection reset by \S+ port \d+\s*$",
    re.MULTILINE,
)


class DroppedBeforeBanner(ConnectError):
    """ssh's connection was closed before the server's banner: what sshd does past its
    MaxStartups, so worth trying again (``handshakes.pause_before``)."""
