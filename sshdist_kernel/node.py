"""``Node``: an SSH session plus a Guile REPL on the remote host, and the chapter's
node procedures (``make-node`` ... ``node-server-running?``, ``with-ssh``, ``rrepl``).

A node reaches its REPL one of two ways: a fresh ``guile`` on an exec channel (the
default: it opens no port), or a REPL server started by ``node_run_server``, on a
Unix socket in a private directory or, when asked for by number, a TCP port.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from .errors import NodeError, NodeTimeoutError
from .guile import GuileRepl
from .rrepl import (
    DEFAULT_EVAL_TIMEOUT,
    START_TIMEOUT,
    EvalResult,
    ReplLanguage,
    Rrepl,
    _ReplClosed,
)
from .session import Session, make_session

log = logging.getLogger(__name__)

UNIX = "unix"
"""``repl_port`` value for a REPL server on a Unix socket in a private directory."""

_SERVER_DIR = '"${XDG_RUNTIME_DIR:-$HOME/.cache}/sshdist"'


class Node:
    """A remote host reached over SSH, with a live Guile REPL on it.

    ``repl_port`` is None for a fresh REPL per node on an exec channel, ``"unix"``
    for the node's REPL server on a private Unix socket, or a TCP port number (on the
    node's loopback, where every local user can connect, so the server serves only
    clients that first send the key it keeps in a file only its user can read).
    """

    def __init__(
        self,
        session: Session,
        repl_port: int | str | None = None,
        *,
        language: ReplLanguage | None = None,
        start_server: bool = True,
    ) -> None:
        port_number = (
            isinstance(repl_port, int) and not isinstance(repl_port, bool) and 0 < repl_port < 65536
        )
        if not (repl_port is None or repl_port == UNIX or port_number):
            raise ValueError(
                f"repl_port must be None, 'unix' or a port number (1-65535), not {repl_port!r}"
            )
        self.session = session
        self.repl_port = repl_port
        self.language = language or GuileRepl()
        self.start_server = start_server
        self._rrepl: Rrepl | None = None
        self._lock = threading.Lock()
        self._server_key: bytes | None = None  # a TCP server's key, read once
        self.name = session.options.alias
        self.restarts = 0
        """How many times a broken REPL was replaced by a fresh one (definitions lost)."""
        self.last_loss: str | None = None
        """Why the last replaced REPL was given up."""

    def __repr__(self) -> str:
        port = "exec" if self.repl_port is None else self.repl_port
        s = self.session
        return f"#<node {s.user}@{s.host}:{s.port}/{port} {id(self):x}>"

    # -- the REPL ----------------------------------------------------------------

    def open_rrepl(self, timeout: float = START_TIMEOUT) -> Rrepl:
        """A new remote REPL on its own channel (``node-open-rrepl``), within ``timeout``."""
        deadline = time.monotonic() + timeout

        def left() -> float:
            seconds = deadline - time.monotonic()
            if seconds <= 0:
                raise NodeTimeoutError(
                    f"could not open a REPL on {self.session.options.target} within {timeout:g} s"
                )
            return seconds

        if not self.session.is_connected():
            self.session.connect(timeout=left())
        where = self.session.options.target
        if self.repl_port is None:
            channel = self.session.open_exec(self.language.command(), timeout=left())
            return Rrepl(
                channel, where=where, language=self.language, alive=self._alive, timeout=left()
            )
        if self.start_server and not node_server_running(self):
            node_run_server(self)
        if self.repl_port == UNIX:
            bridge = self.language.bridge_command('(getenv "SSHDIST_SOCKET")')
            channel = self.session.open_exec(
                f"SSHDIST_SOCKET={self._server_path('sock')} {bridge}", timeout=left()
            )
        else:
            return self._open_server_port(where, left())
        return Rrepl(
            channel,
            where=where,
            language=self.language,
            interrupter=self._interrupt_server_client,
            alive=self._alive,
            timeout=left(),
        )

    def _alive(self, timeout: float) -> bool:
        """Whether the SSH connection answers a keepalive in time; one that does not
        is dropped, so the next call reconnects instead of waiting on it."""
        if self.session.responds(timeout):
            return True
        log.warning("%s stopped answering; dropping its connection", self.name)
        self.session.close()
        return False

    def _open_server_port(self, where: str, timeout: float) -> Rrepl:
        """A REPL on the node's TCP server, which serves only a client whose first
        request is its key; the key is read once, and again when the server refuses
        it (another node object restarted the server, with a new key)."""
        fresh = self._server_key is None
        while True:
            if self._server_key is None:
                self._server_key = self._read_server_key()
            key = self._server_key
            channel = self.session.open_forward("127.0.0.1", self.repl_port)
            try:
                channel.sendall(b"k%d\n" % len(key) + key)
                return Rrepl(
                    channel,
                    where=where,
                    language=self.language,
                    interrupter=self._interrupt_server_client,
                    alive=self._alive,
                    timeout=timeout,
                )
            except NodeTimeoutError:
                channel.close()
                raise
            except (NodeError, OSError, EOFError) as exc:
                channel.close()
                self._server_key = None
                if fresh:  # a key just read is the server's own: it is not the cause
                    raise NodeError(
                        f"the REPL server on {where} port {self.repl_port} refused this "
                        f"node's key or broke ({exc}): if another user's or program's "
                        "server holds that port, choose another; else see its log "
                        f"{self._server_path('log')}"
                    ) from None
                fresh = True

    def _read_server_key(self) -> bytes:
        """The TCP server's key, from the file that only the node's user can read."""
        result = self.session.run(
            f"cat {self._server_path('key')}", timeout=10, what="reading the REPL server's key"
        )
        key = result.stdout.strip().encode()
        if result.status != 0 or not key:
            raise NodeError(
                f"the REPL server on {self.session.options.target} port {self.repl_port} "
                f"has no key file ({result.stderr.strip() or 'empty'}): restart it with "
                "node_stop_server and node_run_server"
            )
        return key

    def _interrupt_server_client(self, rrepl: Rrepl) -> None:
        """A server runs every client in one process, and a busy client reads nothing:
        ask the server, on a second channel, to interrupt this client's thread."""
        helper = self.open_rrepl()
        try:
            helper.interrupt_client(rrepl.client_id)
        finally:
            helper.close()

    def _ready_rrepl(self, timeout: float | None = None) -> Rrepl:
        """The node's REPL; a broken one is replaced (and the session reconnected),
        within ``timeout`` seconds."""
        left = START_TIMEOUT if timeout is None else timeout
        if not self._lock.acquire(timeout=left):
            raise NodeTimeoutError(f"{self.name} is still opening its REPL")
        try:
            if self._rrepl is None or self._rrepl.broken:
                old, self._rrepl = self._rrepl, None
                self._rrepl = self.open_rrepl(timeout=min(left, START_TIMEOUT))
                if old is not None:
                    self.restarts += 1
                    self.last_loss = old.lost or "its REPL was closed"
                    log.warning(
                        "%s: a fresh REPL replaced one that broke (%s); earlier definitions "
                        "are lost",
                        self.name,
                        self.last_loss,
                    )
            return self._rrepl
        finally:
            self._lock.release()

    @property
    def rrepl(self) -> Rrepl:
        """The node's REPL, reopened (and the session reconnected) after a failure."""
        return self._ready_rrepl()

    @property
    def ready(self) -> bool:
        """Whether the node's REPL is open now (asking never connects)."""
        return self._rrepl is not None and not self._rrepl.broken

    @property
    def version(self) -> str | None:
        """The open REPL's version (Guile's), or None before it opens; never connects."""
        return self._rrepl.version if self._rrepl is not None else None

    def eval(
        self,
        source: str,
        *,
        timeout: float | None = DEFAULT_EVAL_TIMEOUT,
        on_start: Callable[[], None] | None = None,
        **options: Any,
    ) -> EvalResult:
        """Evaluate Scheme ``source`` on this node: the four values (``node-eval``).

        ``timeout`` bounds the whole call, reopening a broken REPL included;
        ``on_start`` is called once the REPL is ready, before the source is sent
        (``restarts`` then says whether it is a fresh one)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for attempt in (1, 2):
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            rrepl = self._ready_rrepl(left)
            if on_start is not None:
                on_start()
            try:
                return rrepl.eval(source, timeout=timeout, deadline=deadline, **options)
            except _ReplClosed:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def stop_outcome(self) -> str:
        """What became of an evaluation that was interrupted or timed out, in words:
        stopped with the definitions kept, still stopping, or REPL given up."""
        rrepl = self._rrepl
        if rrepl is None:
            return "its REPL is closed: the next call starts a fresh one"
        return rrepl.state_after_abandon()

    def interrupt(self) -> None:
        """Interrupt the evaluation now running on this node, if any."""
        rrepl = self._rrepl
        if rrepl is not None and not rrepl.broken:
            rrepl.interrupt()

    def close(self) -> None:
        """Close the REPL and the session."""
        with self._lock:
            if self._rrepl is not None:
                self._rrepl.close()
                self._rrepl = None
        self.session.close()

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- REPL server files ---------------------------------------------------------

    def _server_path(self, suffix: str) -> str:
        """A shell word naming this node's server file, in a directory only its user can read."""
        name = "repl" if self.repl_port == UNIX else f"repl-{self.repl_port}"
        return f"{_SERVER_DIR}/{name}.{suffix}"


def make_node(
    session: Session | str,
    repl_port: int | str | None = None,
    *,
    start_server: bool = True,
    language: ReplLanguage | None = None,
    **session_options: Any,
) -> Node:
    """A node on ``session`` (or on a host name, connected with ``session_options``),
    with its REPL started and ready (``make-node``)."""
    if isinstance(session, str):
        session = make_session(session, **session_options)
    elif session_options:
        raise TypeError("session options apply only when make_node is given a host name")
    node = Node(session, repl_port, language=language, start_server=start_server)
    try:
        node.rrepl  # noqa: B018 - start the REPL now, so errors show here
    except BaseException:
        node.close()
        raise
    return node


def make_nodes(
    hosts: list[str | Session], repl_port: int | str | None = None, **options: Any
) -> list[Node]:
    """Make a node on each host at once, one thread each; the nodes come back in the
    order of ``hosts``.  If any fails, the others are closed and its error is raised."""
    results: list[Node | BaseException | None] = [None] * len(hosts)

    def make(i: int) -> None:
        try:
            results[i] = make_node(hosts[i], repl_port, **options)
        except BaseException as exc:  # noqa: BLE001 - re-raised below, in the caller
            results[i] = exc

    threads = [threading.Thread(target=make, args=(i,), daemon=True) for i in range(len(hosts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        for r in results:
            if isinstance(r, Node):
                r.close()
        raise failures[0]
    return results  # type: ignore[return-value]


def is_node(x: object) -> bool:
    """``node?``"""
    return isinstance(x, Node)


def node_session(node: Node) -> Session:
    """``node-session``"""
    return node.session


def node_repl_port(node: Node) -> int | str | None:
    """``node-repl-port``: the server's port, ``"unix"``, or None for an exec-channel REPL."""
    return node.repl_port


def node_eval(node: Node, quoted_exp: str, **options: Any) -> EvalResult:
    """``node-eval``: evaluate Scheme source on ``node`` and return the four values."""
    return node.eval(quoted_exp, **options)


def with_ssh(
    node: Node, *exps: str, timeout: float | None = DEFAULT_EVAL_TIMEOUT, **options: Any
) -> EvalResult:
    """``with-ssh``: evaluate the expressions as one body on ``node``; the four values."""
    if not exps:
        raise ValueError("with_ssh needs at least one expression")
    source = exps[0] if len(exps) == 1 else "(begin " + "\n".join(exps) + ")"
    return node.eval(source, timeout=timeout, **options)


_LOADAVG = '((@ (ice-9 rdelim) read-line) (open-input-file "/proc/loadavg"))'


def parse_loadavg(line: str) -> dict[str, Any]:
    """/proc/loadavg's line as a dict: ``one``, ``five``, ``fifteen`` (floats),
    ``scheduling_entities`` (running, total) and ``last_pid``."""
    one, five, fifteen, entities, last_pid = line.split()
    running, total = entities.split("/")
    return {
        "one": float(one),
        "five": float(five),
        "fifteen": float(fifteen),
        "scheduling_entities": (int(running), int(total)),
        "last_pid": int(last_pid),
    }


def node_loadavg(node: Node) -> EvalResult:
    """``node-loadavg``: the node's load average (see ``parse_loadavg``), read by its
    REPL, and the other three values."""
    result = node.eval(_LOADAVG)
    return EvalResult(
        parse_loadavg(str(result.value)), result.eval_num, result.module, result.language
    )


def read_loadavg(node: Node, timeout: float = 5.0) -> dict[str, Any]:
    """The node's load average read beside its REPL (over a channel of its own), so a
    monitor never waits for a busy REPL; ``NodeError`` if the node does not answer."""
    result = node.session.run("cat /proc/loadavg", timeout=timeout, what="reading the load")
    if result.status != 0:
        raise NodeError(f"{node.name} has no /proc/loadavg: {result.stderr.strip()}")
    return parse_loadavg(result.stdout)


def node_guile_version(node: Node) -> str | None:
    """``node-guile-version``: the Guile version on the node, or None without Guile."""
    result = node.session.run(node.language.version_command(), timeout=10)
    return node.language.parse_version(result.stdout) if result.status == 0 else None


def node_open_rrepl(node: Node) -> Rrepl:
    """``node-open-rrepl``: a new RREPL channel to the node."""
    return node.open_rrepl()


def _require_server_mode(node: Node) -> None:
    if node.repl_port is None:
        raise NodeError(
            f"{node} uses a REPL on an exec channel, not a server: make it "
            "with repl_port='unix' or a port number"
        )


def node_server_running(node: Node) -> bool:
    """``node-server-running?``: is this node's REPL server alive (no procps needed)?"""
    _require_server_mode(node)
    pid_file = node._server_path("pid")
    check = f'kill -0 "$(cat {pid_file} 2>/dev/null)" 2>/dev/null'
    if node.repl_port == UNIX:
        check += f" && test -S {node._server_path('sock')}"
    return node.session.run(check, timeout=10).status == 0


def node_run_server(node: Node, timeout: float = 10.0) -> None:
    """``node-run-server``: start the node's REPL server; ``NodeError`` with the
    server's exit status and message when it does not come up."""
    _require_server_mode(node)
    # Paths are shell words (they use $HOME); the server reads them from its environment.
    pid_file, sock, log, lock, key = (
        node._server_path(s) for s in ("pid", "sock", "log", "lock", "key")
    )
    if node.repl_port == UNIX:
        # The socket's 700 directory already keeps other users out: no key.
        address = '(make-socket-address AF_UNIX (getenv "SSHDIST_SOCKET"))'
        key_file, make_key = None, ""
    else:
        address = f"(make-socket-address AF_INET INADDR_LOOPBACK {int(node.repl_port)})"
        key_file = '(getenv "SSHDIST_KEY_FILE")'
        # A new key per server, 32 random bytes in hex, in a file made under umask 077.
        make_key = (
            f"rm -f {key}; head -c 32 /dev/urandom | od -An -vtx1 | tr -d ' \\n' >{key}"
            f" && test -s {key} || exit 1\n"
        )
    server = node.language.server_command(address, '(getenv "SSHDIST_PID_FILE")', key_file)
    # flock serialises starts on one host; a server already alive is left as it is.
    script = f"""umask 077; mkdir -p {_SERVER_DIR} && chmod 700 {_SERVER_DIR} || exit 1
exec 9>{lock}; flock -w 10 9 2>/dev/null
kill -0 "$(cat {pid_file} 2>/dev/null)" 2>/dev/null && exit 0
rm -f {pid_file} {sock}
{make_key}export SSHDIST_PID_FILE={pid_file} SSHDIST_SOCKET={sock} SSHDIST_KEY_FILE={key}
setsid {server} </dev/null >{log} 2>&1 9>&- &
pid=$!
for i in $(seq 100); do
  test -s {pid_file} && exit 0
  kill -0 $pid 2>/dev/null || break
  sleep 0.05
done
cat {log} >&2; rm -f {key}; exit 1
"""
    result = node.session.run(script, timeout=timeout, what="starting the REPL server")
    node._server_key = None  # a server started now has a new key
    if result.status != 0:
        raise NodeError(
            f"the REPL server on {node.session.options.target} did not start "
            f"(status {result.status}): {result.stderr.strip()}"
        )


def node_stop_server(node: Node) -> None:
    """``node-stop-server``: stop the node's REPL server and wait (5 s at most, then
    SIGKILL) until it is gone, so its port is free on return (no procps needed)."""
    _require_server_mode(node)
    pid_file = node._server_path("pid")
    files = " ".join(node._server_path(s) for s in ("pid", "sock", "log", "lock", "key"))
    # One process serves every client in a thread: ending it ends them all.  A zombie
    # has closed its sockets already; its parent (init, after setsid) may reap it late.
    script = f"""pid="$(cat {pid_file} 2>/dev/null)"
alive() {{ kill -0 "$pid" 2>/dev/null && ! grep -qs '^State:.*Z' /proc/"$pid"/status; }}
if [ -n "$pid" ] && kill "$pid" 2>/dev/null; then
  for i in $(seq 100); do alive || break; sleep 0.05; done
  alive && kill -KILL "$pid" 2>/dev/null
fi
rm -f {files}
"""
    node.session.run(script, timeout=15, what="stopping the REPL server")
    node._server_key = None
    with node._lock:
        if node._rrepl is not None:
            node._rrepl.close()
            node._rrepl = None
