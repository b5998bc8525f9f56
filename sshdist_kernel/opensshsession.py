"""An SSH session through OpenSSH's own ``ssh`` client (``transport="openssh"``).

The session is a ControlMaster (``controlmaster``): one ``ssh -M -N -f`` connection per
host (per set of connection options, per Python process), shared by every node and
channel to that host; each channel is an ``ssh`` client process multiplexed over it,
whose pipes are the channel (``pipechannel.PipeChannel``).  A master of the user's own,
named by ``ControlPath`` in their ssh_config and answering ``ssh -O check`` (opened in a
terminal after typing a one-time code, say), is used as it is and never stopped.

A host behind ``ProxyJump`` is reached through one session to the jump host shared by
every host behind it (``JUMPS``): its master's ``ssh -W`` is the ProxyCommand of theirs,
so 64 nodes behind a login node are one login there and one one-time code, as with the
paramiko transport.  A chain ``a,b`` shares at each hop.

Everything ``ssh`` itself knows applies: its ssh_config, agent, certificates,
security keys, GSSAPI, ``Match exec``; errors are the project's (``ConnectError``,
``AuthenticationError``, ``HostKeyError``) with OpenSSH's own words.  Prompts (a
key's passphrase, a one-time code) go through ``SSH_ASKPASS`` to the options'
``prompt(text, echo)`` callable (``askpassbridge``); without one ssh runs with
``BatchMode=yes`` and never waits on a terminal.
"""

from __future__ import annotations

import hashlib
import math
import os
import shlex
import subprocess
import threading
import time
import weakref
from collections.abc import Hashable

from .controlmaster import (
    CHECK_TIMEOUT,
    CONTROL_PERSIST,
    KEEPALIVE,
    DroppedBeforeBanner,
    Master,
    alive,
    check_master,
    control_dir,
    master_for,
    release_master,
    run_bounded,
    ssh_binary,
    start_master,
    stop_master,
)
from .errors import ConnectError, NodeError
from .handshakes import dropped_too_often, pause_before
from .pipechannel import PipeChannel
from .sessionbase import SessionBase
from .sharedsessions import SharedSessions
from .sshconfig import SessionOptions, jump_options

JUMPS = SharedSessions()
"""Sessions to jump hosts, one per connection key, shared by every openssh session
reached through them; the last one to go closes it (and stops its master, if ours)."""


def _quoted(value: str) -> str:
    return f'"{value}"' if any(c.isspace() for c in value) else value


class OpenSshSession(SessionBase):
    """The interface of ``session.Session`` over OpenSSH's ``ssh`` and a ControlMaster."""

    def __init__(self, options: SessionOptions) -> None:
        self.options = options
        self.ssh = ssh_binary()
        self.control_path: str | None = None
        self.users_master = False
        """True when the master is the user's own (used as it is, never stopped)."""
        self.master_pid: int | None = None
        self.jump: OpenSshSession | None = None
        """The shared session to the ProxyJump host this one is reached through."""
        self._jump_key: Hashable = None
        self._master: Master | None = None  # ours, counted in its users
        self._channels: weakref.WeakSet[PipeChannel] = weakref.WeakSet()
        self._lock = threading.Lock()
        self.connect()

    def is_connected(self) -> bool:
        """Our master lives, and so does the jump host's it reaches the host through
        (whose loss ends ours a moment later)."""
        pid, jump = self.master_pid, self.jump
        return (
            self.control_path is not None
            and pid is not None
            and alive(pid)
            and (jump is None or jump.is_connected())
        )

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
        if self.jump is not None:  # given first, it wins over ssh_config's ProxyJump
            args += ["-o", "ProxyCommand=" + self.jump.forward_command()]
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

    def forward_command(self) -> str:
        """A ProxyCommand that reaches ``%h:%p`` from this host, over its master."""
        path = self.control_path
        if path is None:
            raise NodeError(f"the SSH connection to {self.options.target} is closed")
        escaped = [shlex.quote(a.replace("%", "%%")) for a in self._mux_args(path)]
        return " ".join([*escaped, "-W", "'[%h]:%p'", "--", shlex.quote(self.options.alias)])

    def _settings(self, timeout: float) -> dict[str, list[str]]:
        """``ssh -G``: what ssh's own reading of the ssh_config says for this host."""
        o = self.options
        args = self._config_args() + ["-G", "-p", str(o.port), "-l", o.user, "--", o.alias]
        status, out = run_bounded(args, timeout)
        settings: dict[str, list[str]] = {}
        if status == 0:
            for line in out.splitlines():
                key, _, value = line.partition(" ")
                settings.setdefault(key.lower(), []).append(value)
        return settings

    def _check(self, path: str, timeout: float) -> int | None:
        return check_master(self.ssh, path, self.options.alias, timeout)

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
        prompt's time with the person who answers it does not count.  Behind a
        ProxyJump, the shared jump session comes first (connected if it is not)."""
        self.close()
        jump = jump_options(self.options)
        try:
            if jump is not None:
                key = jump.connection_key()
                self.jump = JUMPS.acquire(key, lambda: OpenSshSession(jump))
                self._jump_key = key
            self._join(timeout)
        except BaseException:
            self._release_jump()
            raise

    def _join(self, timeout: float | None) -> None:
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
        master = master_for(path)
        if not master.lock.acquire(timeout=max(deadline - time.monotonic(), 0.1)):
            raise ConnectError(f"{o.target}: another connection to it is still being made")
        try:
            pid = self._check(path, min(CHECK_TIMEOUT, max(deadline - time.monotonic(), 0.1)))
            if pid is None:
                if master.pid is not None:  # ours, hung or gone: make room for a new one
                    stop_master(self.ssh, path, master.pid, o.alias)
                left = max(deadline - time.monotonic(), 0.1)
                args = self._config_args() + self._destination_args(settings)
                args += ["-o", "ControlMaster=yes", "-o", f"ControlPath={path}"]
                args += ["-o", f"ControlPersist={CONTROL_PERSIST}"]
                args += ["-o", f"ConnectTimeout={math.ceil(left)}"]
                args += ["-o", f"ServerAliveInterval={KEEPALIVE}", "-o", "ServerAliveCountMax=3"]
                args += ["-N", "-f", "--", o.alias]
                pid = self._start_master(args, path, deadline, seconds)
            master.pid = pid
            master.users += 1
        finally:
            master.lock.release()
        self._master = master
        self.control_path, self.master_pid, self.users_master = path, pid, False

    def _start_master(self, args: list[str], path: str, deadline: float, seconds: float) -> int:
        """``start_master``, tried again after a growing pause while the server drops the
        connection before its banner (MaxStartups), within the caller's time."""
        o = self.options
        dropped, last_drop = 0, None
        while True:
            try:
                return start_master(self.ssh, args, o, path, deadline, seconds)
            except DroppedBeforeBanner as exc:
                dropped, last_drop = dropped + 1, exc
                pause = pause_before(dropped)
                if time.monotonic() + pause >= deadline:
                    raise dropped_too_often(o.target, dropped, seconds, exc) from None
                time.sleep(pause)
            except ConnectError:  # out of time in a try after drops: the drops are why
                if dropped and time.monotonic() >= deadline:
                    raise dropped_too_often(o.target, dropped, seconds, last_drop) from None
                raise

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
        status, _ = run_bounded(args, max(deadline - time.monotonic(), 0.05))
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
        process uses it any more, then let go of the jump host's session; the user's
        master is left as it is."""
        with self._lock:
            master, self._master = self._master, None
            self.control_path = self.master_pid = None
            self.users_master = False
            channels = list(self._channels)
            self._channels = weakref.WeakSet()
        for channel in channels:
            channel.close()
        if master is not None:
            release_master(self.ssh, master, self.options.alias)
        self._release_jump()

    def _release_jump(self) -> None:
        with self._lock:
            jump, self.jump = self.jump, None
        if jump is not None:
            JUMPS.release(self._jump_key)

    def __repr__(self) -> str:
        state = "connected" if self.is_connected() else "closed"
        whose = ", the user's master" if self.users_master else ""
        via = f", through {self.jump.options.alias}" if self.jump is not None else ""
        return f"#<openssh session {self.user}@{self.host}:{self.port} {state}{whose}{via}>"
