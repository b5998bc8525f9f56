"""``Node``: an SSH session plus a Guile REPL on the remote host, evaluating there, and
the chapter's node procedures (``make-node`` ... ``node-eval``, ``with-ssh``,
``node-loadavg``).

How a node reaches its REPL (a fresh ``guile`` on an exec channel, the default, or a
REPL server started by ``node_run_server``) is ``NodeConnection``'s, in
``nodeconnection``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from .ctrlc import CtrlCCancels
from .errors import EvalCancelled, NodeError
from .guile import GuileRepl
from .hostlist import expand_hosts
from .makenodes import MAX_CONNECTING, MadeNodes, connect_all
from .nodeconnection import NodeConnection
from .pipeline import Pipeline, open_pipeline
from .prompts import PromptRelay, ask_person
from .records import checked_timeout, deadline_after, seconds_left
from .rrepl import DEFAULT_EVAL_TIMEOUT, EvalResult, ReplLanguage, Rrepl, _ReplClosed
from .session import Session
from .transports import make_session

_T = TypeVar("_T")


class Node(NodeConnection):
    """A remote host reached over SSH, with a live Guile REPL on it.

    ``repl_port`` is None for a fresh REPL per node on an exec channel, ``"unix"``
    for the node's REPL server on a private Unix socket, or a TCP port number (on the
    node's loopback, where every local user can connect, so the server serves only
    clients that first send the key it keeps in a file only its user can read).
    """

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
        (``restarts`` then says whether it is a fresh one).  Other options
        (``on_output``, ``on_display``, ``on_input``, ``quiet``, ...) go to ``Rrepl.eval``.

        A Ctrl-C on the main thread sets the evaluation's cancel (``ctrlc``) from the
        start, a broken REPL's reopening included, not only once the source is sent."""
        timeout = checked_timeout(timeout)
        deadline = deadline_after(timeout)
        with CtrlCCancels(options.pop("cancel", None)) as ctrl_c:
            if ctrl_c.event is not None:
                options["cancel"] = ctrl_c.event
            try:
                return self._on_rrepl(
                    deadline,
                    on_start,
                    lambda rrepl: rrepl.eval(source, timeout=timeout, deadline=deadline, **options),
                )
            except EvalCancelled:
                if not ctrl_c.hit:
                    raise
        raise KeyboardInterrupt  # it came before the REPL had the source

    def _on_rrepl(
        self,
        deadline: float | None,
        on_start: Callable[[], None] | None,
        use: Callable[[Rrepl], _T],
    ) -> _T:
        """``use`` the node's REPL, opened first if need be and ``on_start`` called; a
        REPL found closed before anything was evaluated (``_ReplClosed``) is opened again,
        once."""
        for last_try in (False, True):
            rrepl = self._rrepl
            # An open REPL is taken without the node's lock, which only guards opening
            # one (one that breaks meanwhile fails the call, as it would after the lock).
            if rrepl is None or rrepl.broken:
                rrepl = self._ready_rrepl(seconds_left(deadline))
            if on_start is not None:
                on_start()
            try:
                return use(rrepl)
            except _ReplClosed as exc:
                if last_try:  # closed again at once (the node closed meanwhile, say)
                    raise NodeError(str(exc)) from None
        raise AssertionError("unreachable")

    def open_pipeline(
        self,
        source: str,
        attachment: bytes | None,
        *,
        deadline: float | None,
        cancel: threading.Event | None = None,
        on_start: Callable[[], None] | None = None,
    ) -> Pipeline:
        """The node's REPL taken for requests sent ahead of their answers, with
        ``source`` (and its ``attachment``) sent first; a REPL found closed is opened
        again once, as ``eval`` does.  See ``Pipeline``."""

        def first_request(rrepl: Rrepl) -> Pipeline:
            pipeline = open_pipeline(rrepl, deadline, cancel)
            pipeline.send(source, attachment, deadline)
            return pipeline

        return self._on_rrepl(deadline, on_start, first_request)

    def stop_outcome(self) -> str:
        """What became of an evaluation that was interrupted or timed out, in words:
        stopped with the definitions kept, still stopping, or REPL given up."""
        rrepl = self._rrepl
        if rrepl is None:
            return "its REPL is closed: the next call starts a fresh one"
        return rrepl.state_after_abandon()

    def settle(self, timeout: float) -> str:
        """After an interrupt, wait up to ``timeout`` seconds for the REPL to stop what it
        was doing: ``"ready"``, ``"stopping"`` (still, past the wait) or ``"closed"`` (it
        was given up; the next call starts a fresh REPL, without the definitions)."""
        rrepl = self._rrepl
        if rrepl is None:
            return "ready"
        if not rrepl.wait_settled(timeout):
            return "stopping"
        return "closed" if rrepl.broken else "ready"

    def interrupt(self) -> None:
        """Interrupt the evaluation now running on this node, if any."""
        rrepl = self._rrepl
        if rrepl is not None and not rrepl.broken:
            rrepl.interrupt()

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_node(
    session: Session | str,
    repl_port: int | str | None = None,
    *,
    start_server: bool = True,
    language: ReplLanguage | None = None,
    guile: str | None = None,
    **session_options: Any,
) -> Node:
    """A node on ``session`` (or on a host name, connected with ``session_options``),
    with its REPL started and ready (``make-node``).  ``guile`` is the Guile to run
    there, a path or a command on the node's PATH (``"/opt/guile/bin/guile"``,
    ``"guile-2.2"``); the default is ``guile``."""
    if guile is not None:
        if language is not None:
            raise TypeError("give make_node either guile or language, not both")
        if not isinstance(guile, str) or not guile.strip():
            raise ValueError(f"guile must be a path or a command, not {guile!r}")
        language = GuileRepl(guile)
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
    hosts: str | list[str | Session],
    repl_port: int | str | None = None,
    *,
    on_error: str = "raise",
    max_connecting: int = MAX_CONNECTING,
    **options: Any,
) -> MadeNodes:
    """Make a node on each host, ``max_connecting`` handshakes at a time; the nodes come
    back in the order of ``hosts``.  A string is a host list (``"node[1-3]"``, ``"a,b"``),
    and so is each string in a list.

    ``on_error="raise"``: if any host fails, no more are started, the nodes made are
    closed and the error of the first failed host is raised.  ``on_error="skip"``: the
    nodes that came up, and ``.failed`` ({host: why}) and ``.summary()`` for the hosts
    that did not (a ``NodeError``; other errors still raise).  Ctrl-C closes what was
    made (and what is still being made, when it is).

    A login that asks for a code or a password (``prompt``, by default the person at
    hand) is asked on this thread, one question at a time; nodes behind one jump host
    share its connection, so its code is asked once."""
    relay = PromptRelay(options.pop("prompt", ask_person))

    def make(host: str | Session) -> Node:
        if isinstance(host, Session):
            return make_node(host, repl_port, **options)
        return make_node(host, repl_port, prompt=relay.ask, **options)

    return connect_all(
        _expanded(hosts), make, max_connecting=max_connecting, on_error=on_error, relay=relay
    )


def _expanded(hosts: str | list[str | Session]) -> list[str | Session]:
    """Host lists expanded in place, sessions kept, the order kept."""
    if isinstance(hosts, str):
        return list(expand_hosts(hosts))
    out: list[str | Session] = []
    for h in hosts:
        out.extend(expand_hosts(h) if isinstance(h, str) else [h])
    return out


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


def read_cpu_count(node: Node, timeout: float = 5.0) -> int:
    """The node's online cores, read beside its REPL: the scale a load average means
    something against; ``NodeError`` if the node does not answer or cannot say."""
    result = node.session.run(
        "getconf _NPROCESSORS_ONLN || nproc", timeout=timeout, what="counting the cores"
    )
    try:
        return int(result.stdout.split()[0])
    except (IndexError, ValueError):
        raise NodeError(f"{node.name} did not say how many cores it has") from None


def node_guile_version(node: Node) -> str | None:
    """``node-guile-version``: the Guile version on the node, or None without Guile."""
    result = node.session.run(node.language.version_command(), timeout=10)
    return node.language.parse_version(result.stdout) if result.status == 0 else None


def node_open_rrepl(node: Node) -> Rrepl:
    """``node-open-rrepl``: a new RREPL channel to the node."""
    return node.open_rrepl()
