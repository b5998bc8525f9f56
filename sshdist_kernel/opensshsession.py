"""An SSH session through OpenSSH's own ``ssh`` client (``transport="openssh"``).

The session is a ControlMaster: one ``ssh -M -N -f`` connection per host (per set of
connection options, per Python process), shared by every node and channel to that
host; each channel is an ``ssh`` client process multiplexed over it, whose pipes are
the channel (``pipechannel.PipeChannel``).  A master of the user's own, named by
``ControlPath`` in their ssh_config and answering ``ssh -O check`` (opened in a
terminal after typing a one-time code, say), is used as it is and never stopped.

Everything ``ssh`` itself knows applies: its ssh_config, agent, certificates,
security keys, GSSAPI, ``Match exec``; errors are the project's (``ConnectError``,
``AuthenticationError``, ``HostKeyError``) with OpenSSH's own words.  Prompts (a
key's passphrase, a one-time code) go through ``SSH_ASKPASS`` to the options'
``prompt(text, echo)`` callable; without one ssh runs with ``BatchMode=yes`` and
never waits on a terminal.
"""

from __future__ import annotations

import atexit
import hashlib
import math
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path

from .errors import AuthenticationError, ConnectError, HostKeyError, NodeError
from .pipechannel import PipeChannel
from .session import Session
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

ASKPASS_SCRIPT = Path(__file__).with_name("askpass.py")

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


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _is_master(pid: int, path: str) -> bool:
    """Whether ``pid`` is (still) the ssh master of ``path``, not a process that got
    its number after it ended."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return _alive(pid)
    return _alive(pid) and f"ControlPath={path}".encode() in argv


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        process.wait(CHECK_TIMEOUT)
    except subprocess.TimeoutExpired:
        pass


def _run(args: list[str], timeout: float, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run ``args`` to its end within ``timeout`` seconds, in a session of its own:
    (status, stdout + stderr); status None-like -1 when it was killed for time."""
    process = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=env,
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


# -- masters ----------------------------------------------------------------------------


class _Master:
    """One control path of ours: the master's pid and how many sessions use it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.pid: int | None = None
        self.users = 0
        self.lock = threading.Lock()


_masters: dict[str, _Master] = {}
_masters_lock = threading.Lock()


@atexit.register
def _stop_masters_left() -> None:
    """At exit, stop the masters of sessions nobody closed (else ControlPersist would)."""
    with _masters_lock:
        left = [m for m in _masters.values() if m.pid is not None]
    ssh = shutil.which("ssh") or "ssh"
    for master in left:
        _stop_master(ssh, master.path, master.pid, "sshdist")


def _master_for(path: str) -> _Master:
    with _masters_lock:
        master = _masters.get(path)
        if master is None:
            master = _masters[path] = _Master(path)
        return master


# -- prompts ----------------------------------------------------------------------------


_askpass_lock = threading.Lock()


def _askpass_program(directory: Path) -> str:
    """An executable that runs askpass.py with this Python (SSH_ASKPASS takes one path)."""
    text = (
        f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(ASKPASS_SCRIPT))} "$@"\n'
    )
    name = "askpass-" + hashlib.sha256(text.encode()).hexdigest()[:12]
    path = directory / name
    with _askpass_lock:
        if not path.is_file() or path.read_text() != text:
            tmp = directory / f".{name}.{os.getpid()}"
            tmp.write_text(text)
            tmp.chmod(0o700)
            os.replace(tmp, path)
    return str(path)


class _Askpass:
    """A private Unix socket (mode 600) that ssh's askpass helper asks through; each
    question goes to ``prompt(text, echo)`` and its answer back to the helper.  Answers
    are never kept.  ``waited`` counts the seconds spent asking (not the connection's)."""

    def __init__(self, prompt: Callable[[str, bool], str | None], directory: Path) -> None:
        self.prompt = prompt
        self.path = str(directory / f"ap-{secrets.token_hex(6)}")
        self.waited = 0.0
        self.asking_since: float | None = None
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.bind(self.path)
            os.chmod(self.path, 0o600)
            self._sock.listen(4)
            self._sock.settimeout(0.2)
        except OSError:
            self._sock.close()
            raise
        self._thread = threading.Thread(target=self._serve, daemon=True, name="sshdist askpass")
        self._thread.start()

    def env(self, directory: Path) -> dict[str, str]:
        return {
            "SSH_ASKPASS": _askpass_program(directory),
            "SSH_ASKPASS_REQUIRE": "force",
            "SSHDIST_ASKPASS_SOCKET": self.path,
        }

    def seconds_asking(self) -> float:
        since = self.asking_since
        return self.waited + (time.monotonic() - since if since is not None else 0.0)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                try:
                    conn.settimeout(5.0)
                    data = bytearray()
                    while chunk := conn.recv(4096):
                        data += chunk
                    text, _, hint = bytes(data).partition(b"\0")
                    self.asking_since = time.monotonic()
                    try:
                        answer = self.prompt(text.decode("utf-8", "replace"), hint == b"confirm")
                    except Exception:  # noqa: BLE001 - no answer: ssh gives up this method
                        answer = None
                    finally:
                        self.waited += time.monotonic() - self.asking_since
                        self.asking_since = None
                    conn.settimeout(5.0)
                    conn.sendall(b"n" if answer is None else b"y" + str(answer).encode())
                    del answer
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        self._thread.join(1.0)


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


def _words(stderr: str) -> str:
    """OpenSSH's stderr without its banners of @ signs and blank lines."""
    lines = (line.strip().strip("@").strip() for line in stderr.splitlines())
    return "\n  ".join(line for line in lines if line)


def ssh_error(o: SessionOptions, status: int, stderr: str) -> NodeError:
    """The project's error for an ``ssh`` that failed to connect to ``o``'s host."""
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
        return AuthenticationError(f"{o.target} refused authentication; ssh said: {words}")
    return ConnectError(f"ssh could not connect to {o.target}; ssh said: {words}")


def _quoted(value: str) -> str:
    return f'"{value}"' if any(c.isspace() for c in value) else value


# -- the session ------------------------------------------------------------------------


class OpenSshSession:
    """The interface of ``session.Session`` over OpenSSH's ``ssh`` and a ControlMaster."""

    run = Session.run  # open_exec and the options are all it uses

    def __init__(self, options: SessionOptions) -> None:
        self.options = options
        self.ssh = ssh_binary()
        self.control_path: str | None = None
        self.users_master = False
        """True when the master is the user's own (used as it is, never stopped)."""
        self.master_pid: int | None = None
        self._master: _Master | None = None  # ours, counted in its users
        self._channels: weakref.WeakSet[PipeChannel] = weakref.WeakSet()
        self._lock = threading.Lock()
        self.connect()

    @property
    def host(self) -> str:
        return self.options.hostname

    @property
    def port(self) -> int:
        return self.options.port

    @property
    def user(self) -> str:
        return self.options.user

    def is_connected(self) -> bool:
        pid = self.master_pid
        return self.control_path is not None and pid is not None and _alive(pid)

    # -- command lines -----------------------------------------------------------------

    def _config_args(self) -> list[str]:
        return [self.ssh] + (["-F", self.options.ssh_config] if self.options.ssh_config else [])

    def _destination_args(self, settings: dict[str, list[str]]) -> list[str]:
        """What makes ``ssh`` reach the host and check its key as ``resolve_options``
        said, beyond what ssh reads from the same ssh_config (``settings``, ``ssh -G``)."""
        o = self.options
        args = ["-p", str(o.port), "-l", o.user]
        known = {os.path.expanduser(f) for f in settings.get("identityfile", [])}
        for identity in o.identity_files:
            if identity not in known:
                args += ["-o", f"IdentityFile={_quoted(identity)}"]
        if o.identities_only:
            args += ["-o", "IdentitiesOnly=yes"]
        if not o.allow_agent:
            args += ["-o", "IdentityAgent=none"]
        user_files = [f for f in o.known_hosts if f != "/etc/ssh/ssh_known_hosts"]
        if user_files:
            args += ["-o", "UserKnownHostsFile=" + " ".join(_quoted(f) for f in user_files)]
        policy = "accept-new" if o.host_key_policy == "accept-new" else "yes"
        args += ["-o", f"StrictHostKeyChecking={policy}"]
        if o.proxy_jump:
            args += ["-o", f"ProxyJump={o.proxy_jump}"]
        return args

    def _mux_args(self, path: str) -> list[str]:
        """A client of the master at ``path`` only: ``ProxyCommand=false`` makes one
        whose master is gone fail at once instead of connecting by itself."""
        return [
            self.ssh,
            "-F",
            "none",
            "-o",
            "ControlMaster=no",
            "-o",
            f"ControlPath={path}",
            "-o",
            "ProxyCommand=false",
            "-o",
            "BatchMode=yes",
            "-o",
            "LogLevel=ERROR",
            "-T",
        ]

    def _settings(self, timeout: float) -> dict[str, list[str]]:
        """``ssh -G``: what ssh's own reading of the ssh_config says for this host."""
        o = self.options
        args = self._config_args() + ["-G", "-p", str(o.port), "-l", o.user, "--", o.alias]
        status, out = _run(args, timeout)
        settings: dict[str, list[str]] = {}
        if status == 0:
            for line in out.splitlines():
                key, _, value = line.partition(" ")
                settings.setdefault(key.lower(), []).append(value)
        return settings

    def _check(self, path: str, timeout: float) -> int | None:
        """The pid of the master answering at ``path`` within ``timeout``, or None."""
        if not os.path.exists(path):
            return None
        args = [self.ssh, "-F", "none", "-o", f"ControlPath={path}", "-O", "check"]
        status, out = _run([*args, "--", self.options.alias], timeout)
        found = _OWN.search(out)
        return int(found[1]) if status == 0 and found else None

    def _key(self) -> str:
        """Our control socket's name: one per connection options and Python process."""
        o = self.options
        parts = (
            os.getpid(),
            o.alias,
            o.hostname,
            o.port,
            o.user,
            o.ssh_config,
            o.identity_files,
            o.identities_only,
            o.allow_agent,
            o.known_hosts,
            o.host_key_policy,
            o.proxy_jump,
            o.proxy_command,
        )
        return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]

    # -- connecting ------------------------------------------------------------------

    def connect(self, timeout: float | None = None) -> None:
        """Join the host's master, starting one of ours when neither the user's nor
        ours answers, all within ``timeout`` seconds (default: the options'); a
        prompt's time with the person who answers it does not count."""
        self.close()
        o = self.options
        seconds = o.timeout if timeout is None else max(min(timeout, o.timeout), 0.1)
        deadline = time.monotonic() + seconds
        settings = self._settings(seconds)
        theirs = (settings.get("controlpath") or ["none"])[0]
        if theirs.lower() != "none":
            pid = self._check(theirs, max(deadline - time.monotonic(), 0.1))
            if pid is not None:
                self.control_path, self.master_pid, self.users_master = theirs, pid, True
                return
        path = str(control_dir() / self._key())
        master = _master_for(path)
        if not master.lock.acquire(timeout=max(deadline - time.monotonic(), 0.1)):
            raise ConnectError(f"{o.target}: another connection to it is still being made")
        try:
            pid = self._check(path, min(CHECK_TIMEOUT, max(deadline - time.monotonic(), 0.1)))
            if pid is None:
                if master.pid is not None:  # ours, hung or gone: make room for a new one
                    _stop_master(self.ssh, path, master.pid, self.options.alias)
                pid = self._start_master(path, settings, deadline, seconds)
            master.pid = pid
            master.users += 1
        finally:
            master.lock.release()
        self._master = master
        self.control_path, self.master_pid, self.users_master = path, pid, False

    def _start_master(
        self, path: str, settings: dict[str, list[str]], deadline: float, seconds: float
    ) -> int:
        o = self.options
        try:
            os.unlink(path)  # a stale socket would make ssh give up multiplexing
        except FileNotFoundError:
            pass
        left = max(deadline - time.monotonic(), 0.1)
        args = self._config_args() + self._destination_args(settings)
        args += ["-o", "ControlMaster=yes", "-o", f"ControlPath={path}"]
        args += ["-o", f"ControlPersist={CONTROL_PERSIST}"]
        args += ["-o", f"ConnectTimeout={math.ceil(left)}"]
        args += ["-o", f"ServerAliveInterval={KEEPALIVE}", "-o", "ServerAliveCountMax=3"]
        env = dict(os.environ)
        prompt = getattr(o, "prompt", None)
        askpass = None
        if prompt is None:
            args += ["-o", "BatchMode=yes"]
        else:
            askpass = _Askpass(prompt, control_dir())
            env.update(askpass.env(control_dir()))
        args += ["-N", "-f", "--", o.alias]
        try:
            process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
                env=env,
            )
        except OSError as exc:
            if askpass is not None:
                askpass.close()
            raise ConnectError(f"could not run {self.ssh} for {o.target}: {exc}") from None
        try:
            while True:
                asked = askpass.seconds_asking() if askpass is not None else 0.0
                left = deadline + asked - time.monotonic()
                if left <= 0:
                    _kill_group(process)
                    err = process.communicate()[1].decode("utf-8", "replace")
                    raise ConnectError(
                        f"ssh could not connect to {o.target} within {seconds:g} s"
                        + (f"; ssh said: {_words(err)}" if _words(err) else "")
                    )
                try:
                    _, err_bytes = process.communicate(timeout=min(left, 0.25))
                    break
                except subprocess.TimeoutExpired:
                    continue
        except BaseException:
            _kill_group(process)
            raise
        finally:
            if askpass is not None:
                askpass.close()
        err = err_bytes.decode("utf-8", "replace")
        if process.returncode != 0:
            raise ssh_error(o, process.returncode, err)
        pid = self._check(path, CHECK_TIMEOUT)
        if pid is None:
            raise ConnectError(
                f"ssh connected to {o.target}, but its control socket {path} does not "
                f"answer; ssh said: {_words(err) or 'nothing'}"
            )
        return pid

    def responds(self, timeout: float) -> bool:
        """Whether the master answers ``ssh -O check`` and, through it, the host runs a
        command, within ``timeout`` seconds (a stopped master or host fails both)."""
        path = self.control_path
        if path is None:
            return False
        deadline = time.monotonic() + timeout
        if self._check(path, timeout) is None:
            return False
        args = [*self._mux_args(path), "--", self.options.alias, "true"]
        status, _ = _run(args, max(deadline - time.monotonic(), 0.05))
        return status == 0

    # -- channels -----------------------------------------------------------------------

    def _channel(self, args: list[str], what: str) -> PipeChannel:
        try:
            process = subprocess.Popen(
                args,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # Ctrl-C meant for Python does not end it
                bufsize=0,
            )
        except OSError as exc:
            raise NodeError(f"{self.options.target} would not run {what}: {exc}") from None
        channel = PipeChannel(process, f"ssh {self.options.alias}")
        self._channels.add(channel)
        return channel

    def open_exec(self, command: str, timeout: float | None = None) -> PipeChannel:
        """A channel running ``command`` on the host, with stdin/stdout/stderr."""
        path = self.control_path
        if path is None or not self.is_connected():
            raise NodeError(f"the SSH connection to {self.options.target} is closed")
        args = [*self._mux_args(path), "--", self.options.alias, command]
        return self._channel(args, "a command")

    def open_forward(self, host: str, port: int) -> PipeChannel:
        """A channel to ``host:port`` as seen from the remote host (``ssh -W``)."""
        path = self.control_path
        if path is None or not self.is_connected():
            raise NodeError(f"the SSH connection to {self.options.target} is closed")
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        args = [*self._mux_args(path), "-W", where, "--", self.options.alias]
        return self._channel(args, f"a forward to {where}")

    # -- closing ----------------------------------------------------------------------

    def close(self) -> None:
        """Close this session's channels; stop our master when no session of this
        process uses it any more; the user's master is left as it is."""
        with self._lock:
            master, self._master = self._master, None
            self.control_path = self.master_pid = None
            self.users_master = False
            channels = list(self._channels)
            self._channels = weakref.WeakSet()
        for channel in channels:
            channel.close()
        if master is None:
            return
        with master.lock:  # held by connect or close, each bounded
            master.users -= 1
            if master.users <= 0 and master.pid is not None:
                _stop_master(self.ssh, master.path, master.pid, self.options.alias)
                master.pid = None
                master.users = 0

    def __enter__(self) -> OpenSshSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "connected" if self.is_connected() else "closed"
        whose = ", the user's master" if self.users_master else ""
        return f"#<openssh session {self.user}@{self.host}:{self.port} {state}{whose}>"


def _stop_master(ssh: str, path: str, pid: int, alias: str) -> None:
    """Stop our master at ``path``: ``ssh -O exit``, SIGKILL if it hangs (stopped)."""
    if _is_master(pid, path):
        _run([ssh, "-F", "none", "-o", f"ControlPath={path}", "-O", "exit", "--", alias], 1.0)
        end = time.monotonic() + 1.0
        while _alive(pid) and time.monotonic() < end:
            time.sleep(0.01)
        if _alive(pid) and _is_master(pid, path):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            end = time.monotonic() + 1.0
            while _alive(pid) and time.monotonic() < end:
                time.sleep(0.01)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
