"""An SSH session to one host, opened the way ``ssh HOST`` would open it.

ssh_config (Host aliases, HostName, User, Port, IdentityFile, IdentitiesOnly,
ProxyJump, ProxyCommand, UserKnownHostsFile, StrictHostKeyChecking), ssh-agent
and key files, and strict host-key checking against known_hosts by default.
Every failure is a ``NodeError`` subclass whose message names the host.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import socket
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import paramiko

from .errors import (
    ConnectError,
    HostKeyError,
    NodeError,
)
from .handshakes import GATES, dropped_too_often, pause_before
from .knownhosts import HostKeys, read_host_keys
from .sessionbase import SessionBase
from .sharedsessions import SharedSessions
from .sshauth import authenticate
from .sshconfig import SessionOptions, jump_options

# With no handler of the application's, paramiko's transport thread prints tracebacks
# of failures we turn into errors of our own (a peer that never speaks SSH).
logging.getLogger("paramiko.transport").addHandler(logging.NullHandler())

QUIET_WAKE = 1.0
"""Seconds between the looks paramiko's transport thread takes at its own state while
the connection is quiet, once the handshake is done (paramiko's own: 0.1 s).  Each look
costs CPU: at 0.1 s, 64 idle nodes took 23 ms of client CPU a second, and the nodes
already up while others connect paid it too.  Data wakes the thread at once; a closed
session's thread ends within this; keepalives still go out on time (15 s)."""


JUMPS = SharedSessions()
"""Jump hosts' sessions, one per connection key, shared by every session through them."""


class _Dropped(Exception):
    """The server closed the connection before its banner (MaxStartups, most likely)."""


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256 fingerprint of a host key, as ``ssh-keygen -l`` prints it."""
    digest = base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")
    return f"{key.get_name()} SHA256:{digest}"


class Session(SessionBase):
    """An authenticated SSH connection to one host (the chapter's session)."""

    def __init__(self, options: SessionOptions) -> None:
        self.options = options
        self.transport: paramiko.Transport | None = None
        self._jump: Session | None = None  # shared with every session through it
        self._jump_key: object = None
        self._probe_lock = threading.Lock()
        self._probe: threading.Event | None = None
        self.connect()

    def is_connected(self) -> bool:
        """Up, and so is the jump host's connection it runs over (whose loss this
        session's transport may not have noticed yet)."""
        jump = self._jump
        return (
            self.transport is not None
            and self.transport.is_active()
            and (jump is None or jump.is_connected())
        )

    def connect(self, timeout: float | None = None) -> None:
        """Open (or reopen) the connection: socket, handshake, host key, authentication,
        all within ``timeout`` seconds (default: the options').  A connection the
        server drops before its banner (sshd's MaxStartups) is tried again in that time."""
        self.close()
        o = self.options
        if timeout is not None and timeout < o.timeout:
            o = replace(o, timeout=max(timeout, 0.1))
        deadline = time.monotonic() + o.timeout
        route = self._route(o)
        dropped, last_drop = 0, None
        try:
            while True:
                try:
                    with GATES.slot((route, o.hostname, o.port), deadline):
                        self.transport = self._handshake(o, deadline)
                    return
                except _Dropped as exc:
                    dropped, last_drop = dropped + 1, exc
                    pause = pause_before(dropped)
                    if time.monotonic() + pause >= deadline:
                        raise dropped_too_often(o.target, dropped, o.timeout, exc) from None
                    time.sleep(pause)
                except ConnectError:
                    if dropped and time.monotonic() >= deadline:  # out of time after drops:
                        raise dropped_too_often(o.target, dropped, o.timeout, last_drop) from None
                    raise
                except TimeoutError:
                    raise ConnectError(
                        f"{o.target}: other connections to the same sshd were still logging "
                        f"in after {o.timeout:g} s, and no more than {GATES.per_host} log in "
                        "at once"
                    ) from None
        except BaseException:
            self._release_jump()
            raise

    def _route(self, o: SessionOptions) -> object:
        """How the host is reached: directly, through a ProxyCommand, or through a
        shared jump session (acquired here, released by ``close``)."""
        jump = jump_options(o)
        if jump is not None:
            key = jump.connection_key()
            self._jump = JUMPS.acquire(key, lambda: Session(jump))
            self._jump_key = key
            return key
        return o.proxy_command

    def _handshake(self, o: SessionOptions, deadline: float) -> paramiko.Transport:
        sock = self._open_socket(o, deadline)
        transport = None
        try:
            transport = paramiko.Transport(sock)
            left = max(deadline - time.monotonic(), 0.1)
            transport.banner_timeout = transport.handshake_timeout = left
            transport.auth_timeout = o.timeout
            opts = transport.get_security_options()
            # An AEAD cipher first, as OpenSSH orders them: its integrity check runs in
            # C, where an HMAC is checked byte by byte in Python on every packet.
            aead = [c for c in opts.ciphers if c.endswith("-gcm@openssh.com")]
            opts.ciphers = aead + [c for c in opts.ciphers if c not in aead]
            known = read_host_keys(o.known_hosts, o.known_hosts_name)
            if known.keys:
                # Ask for the key type known_hosts has, as OpenSSH does, so a host
                # with several keys is checked against the one we know.
                wanted = [k for k in opts.key_types if k in known.keys]
                opts.key_types = wanted + [k for k in opts.key_types if k not in wanted]
            transport.start_client(timeout=left)
            if not transport.is_active() or transport.host_key is None:
                raise ConnectError(
                    f"{o.target} accepted a TCP connection on port {o.port} but did not speak "
                    f"SSH within {o.timeout:g} s: is sshd listening there?"
                )
            self._check_host_key(transport.get_remote_server_key(), known)
            sock.settimeout(QUIET_WAKE)
            authenticate(transport, o)
        except BaseException as exc:
            if transport is not None:
                transport.close()
            else:
                sock.close()
            if isinstance(exc, (NodeError, KeyboardInterrupt, SystemExit)):
                raise
            cause = exc.__context__ if isinstance(exc, paramiko.SSHException) else exc
            if isinstance(cause, (EOFError, ConnectionError)) and not getattr(
                transport, "remote_version", None
            ):
                raise _Dropped(str(cause) or "end of file") from None
            if isinstance(exc, paramiko.SSHException) and "banner" in str(exc).lower():
                raise ConnectError(
                    f"{o.target} accepted a TCP connection on port {o.port} but does not speak "
                    f"SSH ({exc}): is sshd listening there?"
                ) from None
            raise ConnectError(
                f"SSH handshake with {o.target} failed: {str(exc) or type(exc).__name__}"
            ) from None
        transport.set_keepalive(15)
        return transport

    def _open_socket(self, o: SessionOptions, deadline: float) -> Any:
        left = max(deadline - time.monotonic(), 0.1)
        if self._jump is not None:
            try:
                return self._jump.transport.open_channel(
                    "direct-tcpip", (o.hostname, o.port), ("127.0.0.1", 0), timeout=left
                )
            except (paramiko.SSHException, OSError, AttributeError) as exc:
                raise ConnectError(
                    f"jump host {self._jump.options.alias} could not reach {o.target}: "
                    f"{str(exc) or type(exc).__name__}"
                ) from None
        if o.proxy_command:
            try:
                return paramiko.ProxyCommand(o.proxy_command)
            except (paramiko.SSHException, OSError) as exc:
                raise ConnectError(f"ProxyCommand for {o.target} failed: {exc}") from None
        try:
            sock = socket.create_connection((o.hostname, o.port), timeout=left)
        except socket.gaierror as exc:
            raise ConnectError(
                f"cannot resolve host name {o.hostname} of {o.target}: {exc.strerror}"
            ) from None
        except ConnectionRefusedError:
            raise ConnectError(
                f"{o.target} refused the connection: is sshd running "
                f"and listening on port {o.port}?"
            ) from None
        except TimeoutError:
            raise ConnectError(
                f"{o.target} did not answer within {o.timeout:g} s: "
                "is the host up and the port open?"
            ) from None
        except (ConnectionResetError, ConnectionAbortedError) as exc:
            raise _Dropped(exc.strerror or str(exc)) from None  # accepted, then dropped
        except OSError as exc:
            raise ConnectError(f"cannot reach {o.target}: {exc.strerror or exc}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _check_host_key(self, key: paramiko.PKey, found: HostKeys) -> None:
        o = self.options
        name = o.known_hosts_name
        print_ = fingerprint(key)
        if found.is_revoked(key):
            raise HostKeyError(
                f"the host key of {o.target} ({print_}) is REVOKED in known_hosts: nothing "
                "was sent. Someone may be impersonating the host, or its key was replaced "
                "on purpose; ask its administrator.",
                name,
                print_,
            )
        known = found.keys
        if key.get_name() in known:
            if known[key.get_name()] == key:
                return
            raise HostKeyError(
                f"the host key of {o.target} has CHANGED (now {print_}); someone may be "
                f"intercepting the connection. If the change is expected, remove the old "
                f"entry for {name} from {self._known_hosts_file()} (ssh-keygen -R '{name}').",
                name,
                print_,
            )
        if known:
            raise HostKeyError(
                f"{o.target} offered a {key.get_name()} key ({print_}) but known_hosts "
                f"holds only {', '.join(known)} keys for {name}.",
                name,
                print_,
            )
        if o.host_key_policy != "accept-new":
            raise HostKeyError(
                f"the host key of {o.target} is not known ({print_}). Check the "
                f"fingerprint, then add it to {self._known_hosts_file()} (for example with "
                f"ssh-keyscan -p {o.port} {o.hostname}), or connect with "
                f"host_key_policy='accept-new'.",
                name,
                print_,
            )
        path = self._known_hosts_file()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="ascii") as f:
            f.write(f"{name} {key.get_name()} {key.get_base64()}\n")

    def _known_hosts_file(self) -> str:
        return self.options.known_hosts[0]

    def responds(self, timeout: float) -> bool:
        """Whether the host answers an SSH keepalive within ``timeout`` seconds: a
        stopped sshd or dropped traffic leaves TCP looking open for minutes."""
        transport = self.transport
        if transport is None or not transport.is_active():
            return False
        with self._probe_lock:
            probe = self._probe
            if probe is None:  # one keepalive in flight at a time; others wait on it
                probe = self._probe = threading.Event()

                def ask() -> None:
                    try:
                        transport.global_request("keepalive@openssh.com", wait=True)
                    except Exception:  # noqa: BLE001 - any failure is a dead transport
                        pass
                    finally:
                        with self._probe_lock:
                            self._probe = None
                        probe.set()

                threading.Thread(target=ask, daemon=True, name="sshdist keepalive").start()
        return probe.wait(timeout) and transport.is_active()

    # -- channels ---------------------------------------------------------------

    def open_exec(self, command: str, timeout: float | None = None) -> paramiko.Channel:
        """A channel running ``command`` on the host, with stdin/stdout/stderr."""
        if not self.is_connected():
            raise NodeError(f"the SSH connection to {self.options.target} is closed")
        try:
            channel = self.transport.open_session(timeout=timeout or self.options.timeout)
            channel.exec_command(command)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise NodeError(
                f"{self.options.target} would not run a command: {str(exc) or type(exc).__name__}"
            ) from None
        return channel

    def open_forward(self, host: str, port: int) -> paramiko.Channel:
        """A channel to ``host:port`` as seen from the remote host (``ssh -L``'s kind)."""
        if not self.is_connected():
            raise NodeError(f"the SSH connection to {self.options.target} is closed")
        try:
            return self.transport.open_channel(
                "direct-tcpip", (host, port), ("127.0.0.1", 0), timeout=self.options.timeout
            )
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise NodeError(
                f"{self.options.target} could not connect to {host}:{port}: "
                f"{str(exc) or type(exc).__name__}. Is the REPL server running there?"
            ) from None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None
        self._release_jump()

    def _release_jump(self) -> None:
        if self._jump is not None:
            self._jump = None
            JUMPS.release(self._jump_key)

    def __repr__(self) -> str:
        state = "connected" if self.is_connected() else "closed"
        return f"#<session {self.user}@{self.host}:{self.port} {state}>"
