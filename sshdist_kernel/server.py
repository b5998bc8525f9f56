"""A node's REPL server (the chapter's ``node-run-server`` and friends): started once
per host and port, in a directory only the node's user can open, on a Unix socket or a
TCP port on the node's loopback; a TCP server serves only clients that send its key."""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Any, Protocol

from .errors import NodeError, NodeTimeoutError
from .rrepl import ReplLanguage, Rrepl

if TYPE_CHECKING:
    from .session import Session

UNIX = "unix"
"""``repl_port`` value for a REPL server on a Unix socket in a private directory."""

SERVER_DIR = '"${XDG_RUNTIME_DIR:-$HOME/.cache}/sshdist"'
"""Where a node's server files live: a shell word, expanded on the node."""


class ServerNode(Protocol):
    """What the server procedures use of a node (a ``Node``): its session, port and
    language, the TCP server's key it keeps, and its REPL, made on a server's channel or
    dropped when the server goes."""

    session: Session
    repl_port: int | str | None
    language: ReplLanguage
    _server_key: bytes | None

    def server_rrepl(self, channel: Any, timeout: float) -> Rrepl: ...

    def drop_rrepl(self) -> None: ...


def server_path(node: ServerNode, suffix: str) -> str:
    """A shell word naming this node's server file, in a directory only its user can read."""
    name = "repl" if node.repl_port == UNIX else f"repl-{node.repl_port}"
    return f"{SERVER_DIR}/{name}.{suffix}"


def open_server_port(node: ServerNode, where: str, timeout: float) -> Rrepl:
    """A REPL on the node's TCP server, which serves only a client whose first
    request is its key; the key is read once, and again when the server refuses
    it (another node object restarted the server, with a new key)."""
    fresh = node._server_key is None
    while True:
        if node._server_key is None:
            node._server_key = _read_server_key(node)
        key = node._server_key
        channel = node.session.open_forward("127.0.0.1", node.repl_port)
        try:
            channel.sendall(b"k%d\n" % len(key) + key)
            return node.server_rrepl(channel, timeout)
        except NodeTimeoutError:
            channel.close()
            raise
        except (NodeError, OSError, EOFError) as exc:
            channel.close()
            node._server_key = None
            if fresh:  # a key just read is the server's own: it is not the cause
                raise NodeError(
                    f"the REPL server on {where} port {node.repl_port} refused this "
                    f"node's key or broke ({exc}): if another user's or program's "
                    "server holds that port, choose another; else see its log "
                    f"{server_path(node, 'log')}"
                ) from None
            fresh = True


def _read_server_key(node: ServerNode) -> bytes:
    """The TCP server's key, from the file that only the node's user can read."""
    result = node.session.run(
        f"cat {server_path(node, 'key')}", timeout=10, what="reading the REPL server's key"
    )
    key = result.stdout.strip().encode()
    if result.status != 0 or not key:
        raise NodeError(
            f"the REPL server on {node.session.options.target} port {node.repl_port} "
            f"has no key file ({result.stderr.strip() or 'empty'}): restart it with "
            "node_stop_server and node_run_server"
        )
    return key


def _require_server_mode(node: ServerNode) -> None:
    if node.repl_port is None:
        raise NodeError(
            f"{node} uses a REPL on an exec channel, not a server: make it "
            "with repl_port='unix' or a port number"
        )


def node_server_running(node: ServerNode) -> bool:
    """``node-server-running?``: is this node's REPL server alive (no procps needed)?"""
    _require_server_mode(node)
    pid_file = server_path(node, "pid")
    check = f'kill -0 "$(cat {pid_file} 2>/dev/null)" 2>/dev/null'
    if node.repl_port == UNIX:
        check += f" && test -S {server_path(node, 'sock')}"
    return node.session.run(check, timeout=10).status == 0


def node_run_server(node: ServerNode, timeout: float = 10.0) -> None:
    """``node-run-server``: start the node's REPL server; ``NodeError`` with the
    server's exit status and message when it does not come up."""
    _require_server_mode(node)
    # Paths are shell words (they use $HOME); the server reads them from its environment.
    pid_file, sock, log, lock, key = (
        server_path(node, s) for s in ("pid", "sock", "log", "lock", "key")
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
    guile = shlex.quote(node.language.executable)
    script = f"""umask 077; mkdir -p {SERVER_DIR} && chmod 700 {SERVER_DIR} || exit 1
command -v {guile} >/dev/null 2>&1 || {{ echo "{guile}: not found" >&2; exit 127; }}
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
    if result.status == 127:
        where = node.session.options.target
        raise NodeError(node.language.missing_message(where, 127, result.stderr.strip()))
    if result.status != 0:
        raise NodeError(
            f"the REPL server on {node.session.options.target} did not start "
            f"(status {result.status}): {result.stderr.strip()}"
        )


def node_stop_server(node: ServerNode) -> None:
    """``node-stop-server``: stop the node's REPL server and wait (5 s at most, then
    SIGKILL) until it is gone, so its port is free on return (no procps needed)."""
    _require_server_mode(node)
    pid_file = server_path(node, "pid")
    files = " ".join(server_path(node, s) for s in ("pid", "sock", "log", "lock", "key"))
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
    node.drop_rrepl()
