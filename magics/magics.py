"""IPython magics that drive SSH nodes from a Python notebook or terminal.

``%nodes`` makes a node list, ``%%with_ssh`` runs a cell on one node, ``%%distribute``
runs a cell's forms in parallel, ``%dist_map`` maps Scheme over Python data.  Errors
show as a few lines (node, job, Guile's message), never a library traceback.
"""

from __future__ import annotations

import atexit
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from IPython.core.magic import Magics, cell_magic, line_cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, kwds, magic_arguments, parse_argstring

from sshdist_kernel import (
    DistCall,
    EventCallback,
    Node,
    NodeError,
    NodeReplError,
    dist_map_async,
    distribute_async,
    make_nodes,
    sexp,
)
from sshdist_kernel.localnodes import LocalNodes
from sshdist_kernel.rrepl import FormResult

from .display import NodeTable, Progress
from .follow import CallEvents, follow
from .loadavg import LoadMonitor
from .magicline import leading_options, python_expression_end
from .printed import LiveLines, show_by_node


class NodeList(list):
    """``%nodes``' result: a list of nodes; ``local`` is the LocalNodes behind them when
    they were started with ``--local`` (``nodes.local.stop("node2")`` stops one)."""

    local: LocalNodes | None = None


def _in_notebook(shell: Any) -> bool:
    return getattr(shell, "kernel", None) is not None


class SshdistError(Exception):
    """A failure shown as its message alone: IPython calls ``_render_traceback_``."""

    def _render_traceback_(self) -> list[str]:
        return [
            f"{type(self).__name__}: {line}" if i == 0 else line
            for i, line in enumerate(str(self).splitlines())
        ]


class CallStopped(KeyboardInterrupt):
    """Ctrl-C (or the stop button) during a call: still a ``KeyboardInterrupt``, shown
    as one line, not a traceback through the magics."""

    def _render_traceback_(self) -> list[str]:
        return [f"KeyboardInterrupt: {self}"]


def _explain(exc: BaseException) -> SshdistError:
    if isinstance(exc, NodeReplError):
        text = str(exc)
        if exc.output:
            text += f"\nprinted before the error: {exc.output[-500:]!r}"
    else:
        text = str(exc)
    moves = getattr(exc, "moves", ())
    if moves:
        text += "\n" + "\n".join(f"  {m}" for m in moves)
    return SshdistError(text)


_STREAM_HELP = (
    "print what the nodes print as it arrives, each line labelled with its node "
    "([node1] text), instead of grouped by node after the call"
)


@magics_class
class SshdistMagics(Magics):
    """``%nodes``, ``%%with_ssh``, ``%%distribute`` and ``%dist_map``."""

    def __init__(self, shell: Any) -> None:
        super().__init__(shell)
        self._local: LocalNodes | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._ssh_config: str | None = None  # the last one %nodes used, for names later
        self._named: dict[str, Node] = {}
        atexit.register(self._close_named)

    # -- nodes -------------------------------------------------------------------------

    def _nodes(self, expression: str) -> list[Node]:
        """Nodes from a Python expression in the user's namespace: a node, a list of nodes,
        or host names (made into nodes, in parallel)."""
        try:
            value = self.shell.ev(expression)
        except Exception as exc:
            raise SshdistError(f"{expression!r} does not name nodes: {exc}") from None
        if isinstance(value, Node):
            return [value]
        if isinstance(value, str):
            value = [value]
        items = list(value) if isinstance(value, (list, tuple)) else None
        if not items:
            raise SshdistError(f"{expression!r} is {value!r}, not a node or a list of nodes")
        # Nodes made from names are kept, so naming hosts in every call reuses them
        # instead of opening (and leaking) a connection per call.
        new = sorted({i for i in items if isinstance(i, str)} - set(self._named))
        if new:
            try:
                self._named.update(
                    zip(new, make_nodes(new, **self._session_options()), strict=True)
                )
            except NodeError as exc:
                raise _explain(exc) from None
        items = [self._named[i] if isinstance(i, str) else i for i in items]
        for item in items:
            if not isinstance(item, Node):
                raise SshdistError(f"{item!r} in {expression!r} is not a node")
        return items

    def _close_named(self) -> None:
        for node in self._named.values():
            node.close()
        self._named.clear()

    def _session_options(self) -> dict[str, str]:
        if self._ssh_config:
            return {"ssh_config": self._ssh_config}
        return self._local.session_options() if self._local else {}

    def _start_local(self, count: int) -> list[str]:
        if self._local is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="sshdist-magics-")
            self._local = LocalNodes.up(count, self._tmp.name)
            atexit.register(self._stop_local)
        return self._local.names[:count]

    def _stop_local(self) -> None:
        if self._local is not None:
            self._local.down()
            self._local = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    @magic_arguments()
    @argument("-o", "--output", metavar="NAME", help="store the node list in this variable")
    @argument("-F", "--ssh-config", help="ssh_config file for the host names")
    @argument(
        "--local",
        type=int,
        metavar="N",
        help="start N local nodes (real sshd on 127.0.0.1) and use them",
    )
    @argument("hosts", nargs="*", help="ssh_config aliases, hosts, user@host:port")
    @line_magic
    def nodes(self, line: str) -> list[Node] | None:
        """Make nodes in parallel and show them; ``nodes = %nodes hpc1 hpc2`` or
        ``%nodes -o nodes --local 3``."""
        args = parse_argstring(self.nodes, line)
        hosts = list(args.hosts)
        if args.local:
            hosts = self._start_local(args.local) + hosts
            self._ssh_config = str(self._local.ssh_config)
        if args.ssh_config:
            self._ssh_config = args.ssh_config
        options = self._session_options()
        if not hosts:
            raise SshdistError("name some hosts, or start local nodes with --local N")
        started = time.monotonic()
        try:
            made = make_nodes(hosts, **options)
        except (NodeError, ValueError) as exc:
            raise _explain(exc) from None
        NodeTable(made, time.monotonic() - started).show()
        made = NodeList(made)
        made.local = self._local if args.local else None
        if args.output:
            self.shell.user_ns[args.output] = made
            return None
        return made

    @magic_arguments()
    @argument("-o", "--output", metavar="NAME", help="store the monitor in this variable")
    @argument("--every", type=float, default=2.0, help="seconds between refreshes")
    @argument("--stop", action="store_true", help="stop the monitors this magic started")
    @argument("nodes", nargs="?", help="the nodes: a variable, a list of names or a node")
    @line_magic
    def loadavg(self, line: str) -> None:
        """Each node's load average against its cores, its state and Guile version, and
        a chart of its recent load: in a notebook, a dashboard refreshing in place until
        ``mon.stop()`` or ``%loadavg --stop``; in a terminal, a table.  ``-o mon`` keeps
        the monitor: ``mon`` shows the dashboard again, ``mon.poll()`` reads now."""
        from IPython.display import display

        args = parse_argstring(self.loadavg, line)
        monitors = self.__dict__.setdefault("_monitors", [])
        if args.stop:
            for m in monitors:
                m.stop()
            monitors.clear()
            return None
        if not args.nodes:
            raise SshdistError("usage: %loadavg [--every S] [-o NAME] NODES")
        notebook = _in_notebook(self.shell)
        try:
            monitor = LoadMonitor(self._nodes(args.nodes), every=args.every, widgets=notebook)
        except ValueError as exc:  # --every 0
            raise SshdistError(f"--every: {exc}") from None
        monitor.poll()
        if notebook:
            monitors.append(monitor.start())
        display(monitor)
        if args.output:
            self.shell.user_ns[args.output] = monitor
        return None

    # -- one node ----------------------------------------------------------------------

    @magic_arguments()
    @argument("-o", "--output", metavar="NAME", help="store the value in this variable")
    @argument("node", help="a node, or a variable holding one (the first of a list)")
    @cell_magic
    def with_ssh(self, line: str, cell: str) -> None:
        """Run the cell on one node, as typed into its REPL; shows each value ($N),
        the module and the language, and streams what the code prints."""
        args = parse_argstring(self.with_ssh, line)
        node = self._nodes(args.node)[0]

        def show(form: FormResult) -> None:
            for num, text in zip(form.eval_nums, form.texts, strict=True):
                print(f"${num} = {text}")

        def stream(name: str, text: str) -> None:
            (sys.stdout if name == "stdout" else sys.stderr).write(text)

        try:
            result = node.eval(cell, timeout=None, on_output=stream, on_form=show)
        except (NodeError, NodeReplError) as exc:
            raise _explain(exc) from None
        print(f"[{node.name}: module {result.module}, language {result.language}]")
        if args.output:
            self.shell.user_ns[args.output] = result.value

    # -- many nodes --------------------------------------------------------------------

    @magic_arguments()
    @argument("-o", "--output", metavar="NAME", help="store the results in this variable")
    @argument("--timeout", type=float, metavar="S", help="seconds the whole call may take")
    @argument("--stream", action="store_true", help=_STREAM_HELP)
    @argument("nodes", help="the nodes: a variable, a list of names or a node")
    @cell_magic
    def distribute(self, line: str, cell: str) -> tuple | None:
        """Evaluate each top-level form of the cell in parallel on the nodes; the results
        come back as a tuple, in order.  What the forms print is shown by node."""
        args = parse_argstring(self.distribute, line)
        nodes = self._nodes(args.nodes)
        try:
            forms = sexp.split_forms(cell)
        except ValueError as exc:
            raise SshdistError(f"the cell is not Scheme forms: {exc}") from None
        results = self._follow(
            "distribute",
            nodes,
            len(forms),
            lambda on_event: distribute_async(
                nodes, *forms, timeout=args.timeout, on_event=on_event
            ),
            args.stream,
        )
        if args.output:
            self.shell.user_ns[args.output] = results
            return None
        return results

    @magic_arguments()
    @kwds(usage="%(prog)s [-o NAME] [--timeout S] [--stream] NODES PROC LST")
    @argument("-o", "--output", metavar="NAME", help="store the results in this variable")
    @argument("--timeout", type=float, metavar="S", help="seconds the whole call may take")
    @argument("--stream", action="store_true", help=_STREAM_HELP)
    @argument("nodes", nargs="?", metavar="NODES", help="Python: a variable, names or a node")
    @argument("proc", nargs="?", metavar="PROC", help="Scheme: a lambda or a procedure's name")
    @argument(
        "lst", nargs="?", metavar="LST", help="Python: a sequence (as a cell magic, the cell)"
    )
    @line_cell_magic
    def dist_map(self, line: str, cell: str | None = None) -> list | None:
        """Map PROC (Scheme) over LST (Python) on NODES (Python), in chunks handed to each
        node as it finishes the last; what the nodes print is shown by node.
        ``squares = %dist_map nodes (lambda (x) (* x x)) range(10)``."""
        text = line if cell is None else f"{line} {cell}"
        options, rest = leading_options(text, flags=("--stream",))
        args = parse_argstring(self.dist_map, options)
        split = python_expression_end(rest)
        nodes_source, body = rest[:split], rest[split:].strip()
        if not nodes_source or not body:
            raise SshdistError("usage: %dist_map [-o NAME] [--timeout S] [--stream] NODES PROC LST")
        nodes = self._nodes(nodes_source)
        try:
            end = sexp.datum_end(body, 0)
        except ValueError as exc:
            raise SshdistError(f"PROC is not one Scheme datum: {exc}") from None
        proc, lst_source = body[:end], body[end:].strip()
        if not lst_source:
            raise SshdistError("LST is missing: %dist_map NODES PROC LST")
        try:
            items = list(self.shell.ev(lst_source))
        except Exception as exc:
            raise SshdistError(f"LST {lst_source!r} is not a Python sequence: {exc}") from None
        results = self._follow(
            "dist_map",
            nodes,
            len(items),
            lambda on_event: dist_map_async(
                nodes, proc, items, timeout=args.timeout, on_event=on_event
            ),
            args.stream,
        )
        if args.output:
            self.shell.user_ns[args.output] = results
            return None
        return results

    def _follow(
        self,
        what: str,
        nodes: list[Node],
        total: int,
        start: Callable[[EventCallback], DistCall],
        stream: bool,
    ) -> Any:
        """Start a call and draw it here: its progress (and with ``stream`` what the
        nodes print, as they print it), its summary line, then what the nodes printed,
        by node; errors as ``SshdistError``."""
        progress = Progress(what, nodes, total, widgets=_in_notebook(self.shell))
        live = LiveLines() if stream else None
        events = CallEvents()
        order = [n.name for n in nodes]
        try:
            results = follow(start(events.put), events, progress, live)
        except KeyboardInterrupt:
            progress.close("stopped")
            raise CallStopped(
                f"{what} stopped: the nodes' work was interrupted (they keep their definitions)"
            ) from None
        except (NodeError, NodeReplError, sexp.SexpError, ValueError) as exc:
            progress.close("failed")
            if live is None:
                show_by_node(getattr(exc, "outputs", {}), order)
            raise _explain(exc) from None
        except BaseException:
            progress.close("failed")
            raise
        progress.close()
        if live is None:
            show_by_node(results.outputs, order)
        return results
