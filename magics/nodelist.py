"""Which nodes a magic means: a Python expression in the user's namespace (a node, a
list of nodes, host names), and the nodes the magics made and keep (from names, and
local ones started with ``%nodes --local``)."""

from __future__ import annotations

import atexit
import os
import sys
import tempfile
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from sshdist_kernel import (
    MadeNodes,
    Node,
    NodeError,
    expand_hosts,
    make_nodes,
    read_hostfile,
    slurm_hosts,
)
from sshdist_kernel.localnodes import LocalNodes, LocalNodesError

from .display import NodeTable, node_row
from .errors import SshdistError, connecting_stopped, explain


class NodeList(MadeNodes):
    """``%nodes``' result: a list of nodes, ``failed`` the hosts that did not come up
    ({host: why}); ``local`` is the LocalNodes behind them when they were started with
    ``--local`` (``nodes.local.stop("node2")`` stops one)."""

    local: LocalNodes | None = None

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        """Shown at the prompt or as a cell's value: a row a node, never a repr."""
        if cycle:
            p.text("[...]")
            return
        rows = [self.summary()] + [f"  {node_row(n)}" for n in self]
        rows += [f"  {host:12} FAILED: {why}" for host, why in self.failed.items()]
        p.text("\n".join(rows))


def named_hosts(
    hosts: list[str],
    hostfiles: list[str] | None = None,
    slurm: bool = False,
    environ: Mapping[str, str] = os.environ,
) -> list[str]:
    """``%nodes``' host names: each hostfile's, the Slurm allocation's, then the host lists
    on the line, expanded (``cn[01-32]``); a mistake is one line naming where it is."""
    names: list[str] = []
    for path in hostfiles or []:
        try:
            names += read_hostfile(path)
        except OSError as exc:
            raise SshdistError(f"--hostfile {path}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise SshdistError(f"--hostfile {exc}") from None
    if slurm:
        try:
            names += slurm_hosts(environ)
        except ValueError as exc:
            raise SshdistError(f"--slurm: {exc}") from None
    for spec in hosts:
        try:
            names += expand_hosts(spec)
        except ValueError as exc:
            raise SshdistError(str(exc)) from None
    return names


class Hosts:
    """The session options names are made into nodes with, the nodes made from names
    (reused, so naming hosts in every call opens no new connection), and local nodes."""

    def __init__(self) -> None:
        self.local: LocalNodes | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None
        self.ssh_config: str | None = None  # the last one %nodes used, for names later
        self.guile: str | None = None  # the last --guile of %nodes, for names later
        self.transport: str | None = None  # the last --transport of %nodes, likewise
        self.named: dict[str, Node] = {}
        atexit.register(self.close)

    def resolve(self, expression: str, ev: Callable[[str], Any]) -> list[Node]:
        """Nodes from ``expression`` evaluated by ``ev``: a node, a list of nodes, or host
        names and host lists (``"node[1-3]"``; made into nodes, in parallel)."""
        try:
            value = ev(expression)
        except Exception as exc:
            raise SshdistError(f"{expression!r} does not name nodes: {exc}") from None
        if isinstance(value, Node):
            return [value]
        if isinstance(value, str):
            value = [value]
        items = list(value) if isinstance(value, (list, tuple)) else None
        if not items:
            raise SshdistError(f"{expression!r} is {value!r}, not a node or a list of nodes")
        items = [h for i in items for h in (named_hosts([i]) if isinstance(i, str) else [i])]
        new = sorted({i for i in items if isinstance(i, str)} - set(self.named))
        if new:
            try:
                self.named.update(zip(new, make_nodes(new, **self.session_options()), strict=True))
            except NodeError as exc:
                raise explain(exc) from None
            except KeyboardInterrupt:
                raise connecting_stopped(new) from None
        items = [self.named[i] if isinstance(i, str) else i for i in items]
        for item in items:
            if not isinstance(item, Node):
                raise SshdistError(f"{item!r} in {expression!r} is not a node")
        return items

    def session_options(self) -> dict[str, str]:
        if self.ssh_config:
            options = {"ssh_config": self.ssh_config}
        else:
            options = self.local.session_options() if self.local else {}
        options = {**options, "guile": self.guile} if self.guile else options
        return {**options, "transport": self.transport} if self.transport else options

    def start_local(self, count: int) -> list[str]:
        """Names of ``count`` local nodes, started on first use, more started when more
        are asked for later (all stopped at exit)."""
        try:
            if self.local is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="sshdist-magics-")
                self.local = LocalNodes.up(count, self._tmp.name)
            elif count > len(self.local.nodes):
                self.local.grow(count)
        except LocalNodesError as exc:
            raise SshdistError(f"--local {count}: {exc}") from None
        self.ssh_config = str(self.local.ssh_config)
        return self.local.names[:count]

    def make(self, args: Any, environ: Mapping[str, str]) -> NodeList:
        """``%nodes``' work: its hosts made into nodes, shown as a table with the hosts
        that did not come up below; -F and --guile remembered once nodes came of them."""
        if args.local is not None and args.local < 1:
            raise SshdistError(f"--local: start at least one node, not {args.local}")
        if args.ssh_config and not os.path.isfile(os.path.expanduser(args.ssh_config)):
            raise SshdistError(f"-F {args.ssh_config}: no such ssh_config file")
        hosts = named_hosts(args.hosts, args.hostfile, args.slurm, environ)
        if args.local:
            hosts = self.start_local(args.local) + hosts
        if not hosts:
            raise SshdistError("name some hosts, or start local nodes with --local N")
        # -F is remembered (for host names in later calls) only once nodes came of it.
        options = {"ssh_config": args.ssh_config} if args.ssh_config else self.session_options()
        if args.guile:
            options["guile"] = args.guile
        if args.transport:
            options["transport"] = args.transport
        started = time.monotonic()
        try:
            made = make_nodes(
                hosts,
                on_error="raise" if args.strict else "skip",
                max_connecting=args.max_connecting,
                **options,
            )
        except (NodeError, ValueError) as exc:
            raise explain(exc) from None
        except KeyboardInterrupt:
            raise connecting_stopped(hosts) from None
        table = NodeTable(made, time.monotonic() - started, made.failed)
        if not made:
            raise SshdistError("\n".join(table.rows()))
        if args.ssh_config:
            self.ssh_config = args.ssh_config
        if args.guile:
            self.guile = args.guile
        if args.transport:
            self.transport = args.transport
        table.show()
        made = NodeList(made, made.failed)
        made.local = self.local if args.local else None
        return made

    def close(self) -> None:
        for node in self.named.values():
            node.close()
        self.named.clear()
        if self.local is not None:
            self.local.down()
            self.local = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


class ReplacedRepls:
    """Each node's REPL replacements the user has been told of: when a call runs on a
    fresh REPL that replaced a broken one (its definitions are gone), the magics say so,
    one line on stderr, as the Guile kernel does."""

    def __init__(self) -> None:
        self._known: weakref.WeakKeyDictionary[Node, int] = weakref.WeakKeyDictionary()

    def watch(self, nodes: list[Node]) -> None:
        for node in nodes:
            self._known.setdefault(node, node.restarts)

    def say(self, nodes: list[Node]) -> None:
        for node in nodes:
            known = self._known.get(node)
            if known is not None and node.restarts != known:
                print(
                    f"[the REPL on {node.name} was replaced by a fresh one ({node.last_loss}): "
                    f"{node.restart_consequence}]",
                    file=sys.stderr,
                    flush=True,
                )
            self._known[node] = node.restarts
