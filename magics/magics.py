"""IPython magics that drive SSH nodes from a Python notebook or terminal.

``%nodes`` makes a node list, ``%%with_ssh`` runs a cell on one node, ``%%distribute``
runs a cell's forms in parallel, ``%dist_map`` maps Scheme over Python data.  Errors
show as a few lines (node, job, Guile's message), never a library traceback.  What each
magic takes (its options and their help) is declared in ``magicargs``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from IPython.core.magic import Magics, cell_magic, line_cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import magic_arguments, parse_argstring
from IPython.display import display

from sshdist_kernel import (
    DistCall,
    EventCallback,
    Node,
    NodeError,
    dist_map_async,
    distribute_async,
    sexp,
)

from .background import (
    BackgroundCall,
    describe_busy,
    show_result,
    still_busy,
    stopped_waiting,
    wait_for,
)
from .display import have_ipywidgets
from .errors import CallStopped, SshdistError, explain
from .follow import finished_well, follow_here
from .loadavg import LoadMonitor
from .magicargs import (
    DIST_MAP_ARGUMENTS,
    DIST_RESULT_ARGUMENTS,
    DISTRIBUTE_ARGUMENTS,
    LOADAVG_ARGUMENTS,
    NODES_ARGUMENTS,
    WITH_SSH_ARGUMENTS,
)
from .magicline import leading_options, python_expression_end
from .nodelist import Hosts, ReplacedRepls
from .partial import say_partial
from .withssh import run_on_node

KEPT_CALLS = 20
"""Background calls the magics remember for ``%dist_result`` (the latest)."""


def _in_notebook(shell: Any) -> bool:
    return getattr(shell, "kernel", None) is not None


def _fold(args: Any) -> bool | None:
    """``--group-outputs``: fold, by node, or (None) as many nodes make best."""
    return None if args.group_outputs is None else args.group_outputs == "fold"


@magics_class
class SshdistMagics(Magics):
    """``%nodes``, ``%%with_ssh``, ``%%distribute`` and ``%dist_map``."""

    def __init__(self, shell: Any) -> None:
        super().__init__(shell)
        self.hosts = Hosts()
        self._background: list[BackgroundCall] = []  # the latest last
        self._latest: DistCall | None = None  # the latest call, run here or in the background
        self.replaced = ReplacedRepls()

    # -- nodes -------------------------------------------------------------------------

    def _nodes(self, expression: str) -> list[Node]:
        nodes = self.hosts.resolve(expression, self.shell.ev)
        self.replaced.watch(nodes)
        return nodes

    @magic_arguments()
    @NODES_ARGUMENTS
    @line_magic
    def nodes(self, line: str) -> list[Node] | None:
        """Make nodes in parallel and show them; ``nodes = %nodes hpc1 hpc2``,
        ``%nodes -o nodes cn[01-32]``, ``%nodes --slurm`` or ``%nodes -o nodes --local 3``.
        Hosts that do not come up are shown, one line each, below the nodes that did, and
        left out of the list (its ``failed`` says why); ``--strict`` makes them an error."""
        args = parse_argstring(self.nodes, line)
        made = self.hosts.make(args, os.environ)
        if args.output:
            self.shell.user_ns[args.output] = made
            return None
        return made

    @magic_arguments()
    @LOADAVG_ARGUMENTS
    @line_magic
    def loadavg(self, line: str) -> None:
        """Each node's load average against its cores, its state and Guile version, and
        a chart of its recent load: in a notebook, a dashboard refreshing in place until
        ``mon.stop()`` or ``%loadavg --stop``; in a terminal, a table.  ``-o mon`` keeps
        the monitor: ``mon`` shows the dashboard again, ``mon.poll()`` reads now."""
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
        try:
            monitor.poll()
        except KeyboardInterrupt:  # the reads are bounded and end on their own
            waiting = ", ".join(monitor.reading()) or "the nodes"
            raise CallStopped(
                f"loadavg interrupted while waiting for {waiting}: no dashboard was started"
            ) from None
        if notebook:
            monitors.append(monitor.start())
        display(monitor)
        if args.output:
            self.shell.user_ns[args.output] = monitor
        return None

    # -- one node ----------------------------------------------------------------------

    @magic_arguments()
    @WITH_SSH_ARGUMENTS
    @cell_magic
    def with_ssh(self, line: str, cell: str) -> None:
        """Run the cell on one node, as typed into its REPL; shows each value ($N),
        the module and the language, and streams what the code prints.  What the
        code shows with ``(jupyter-html ...)`` and the other ``(sshdist jupyter)``
        procedures appears in order with it; what it reads is asked for with
        ``input()`` (the end of the input where there is no stdin)."""
        args = parse_argstring(self.with_ssh, line)
        node = self._nodes(args.node)[0]
        self._say_if_busy([node])
        result = run_on_node(
            node,
            cell,
            on_start=lambda: self.replaced.say([node]),
            still_busy=lambda: still_busy(self._background, [node]),
        )
        print(f"[{node.name}: module {result.module}, language {result.language}]")
        if args.output:
            self.shell.user_ns[args.output] = result.value

    # -- many nodes --------------------------------------------------------------------

    @magic_arguments()
    @DISTRIBUTE_ARGUMENTS
    @cell_magic
    def distribute(self, line: str, cell: str) -> Any:
        """Evaluate each top-level form of the cell in parallel on the nodes; the results
        come back as a tuple, in order.  What the forms print is shown by node."""
        args = parse_argstring(self.distribute, line)
        nodes = self._nodes(args.nodes)
        try:
            forms = sexp.split_forms(cell)
        except ValueError as exc:
            raise SshdistError(f"the cell is not Scheme forms: {exc}") from None

        def start(on_event: EventCallback) -> DistCall:
            return distribute_async(nodes, *forms, timeout=args.timeout, on_event=on_event)

        return self._call("distribute", nodes, len(forms), start, args)

    @magic_arguments()
    @DIST_MAP_ARGUMENTS
    @line_cell_magic
    def dist_map(self, line: str, cell: str | None = None) -> Any:
        """Map PROC (Scheme) over LST (Python) on NODES (Python), in chunks handed to each
        node as it finishes the last; what the nodes print is shown by node.
        ``squares = %dist_map nodes (lambda (x) (* x x)) range(10)``."""
        text = line if cell is None else f"{line} {cell}"
        options, rest = leading_options(text, flags=("--stream", "--bg"))
        args = parse_argstring(self.dist_map, options)
        split = python_expression_end(rest)
        nodes_source, body = rest[:split], rest[split:].strip()
        if not nodes_source or not body:
            raise SshdistError(
                "usage: %dist_map [-o NAME] [--timeout S] [--stream] [--group-outputs node|fold] "
                "[--bg] NODES PROC LST"
            )
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

        def start(on_event: EventCallback) -> DistCall:
            return dist_map_async(nodes, proc, items, timeout=args.timeout, on_event=on_event)

        return self._call("dist_map", nodes, len(items), start, args)

    def _call(
        self,
        what: str,
        nodes: list[Node],
        total: int,
        start: Callable[[EventCallback], DistCall],
        args: Any,
    ) -> Any:
        """Run a call as its options say: followed here, or (``--bg``) in the background;
        its results (or the call) in ``-o NAME`` or returned."""
        self.replaced.say(nodes)
        self._say_if_busy(nodes)
        begin = start

        def start(on_event: EventCallback) -> DistCall:  # the latest, for --partial
            self._latest = begin(on_event)
            return self._latest

        if args.bg:
            if args.stream:
                raise SshdistError("--stream shows output live in the cell: not with --bg")
            try:
                bg = BackgroundCall(
                    what, nodes, total, start, widgets=self._widgets(), fold=_fold(args)
                )
            except (NodeError, ValueError) as exc:
                raise explain(exc) from None
            self._background = [*self._background[-(KEPT_CALLS - 1) :], bg]
            result: Any = bg.call
            if bg.view is None:  # a terminal: this line is all it shows until %dist_result
                name = f" {args.output}" if args.output else ""
                print(
                    f"{what} runs in the background on {len(nodes)} node(s); "
                    f"%dist_result{name} waits for it and shows the results"
                )
        else:
            before = self._latest
            try:
                result = follow_here(
                    what,
                    nodes,
                    total,
                    start,
                    stream=args.stream,
                    fold=_fold(args),
                    widgets=_in_notebook(self.shell),
                    on_end=lambda: self.replaced.say(nodes),
                )
            except (SshdistError, KeyboardInterrupt) as exc:
                if self._latest is not before:  # the call began
                    self._keep_partial(exc)
                raise
        if args.output:
            self.shell.user_ns[args.output] = result
            return None
        return result

    def _widgets(self) -> bool:
        return _in_notebook(self.shell) and have_ipywidgets()

    def _say_if_busy(self, nodes: list[Node]) -> None:
        """A note, not an error: on standard output (a notebook shows stderr in red)."""
        note = describe_busy(self._background, nodes)
        if note:
            print(note, flush=True)

    @magic_arguments()
    @DIST_RESULT_ARGUMENTS
    @line_magic
    def dist_result(self, line: str) -> Any:
        """Wait for a background call (``%dist_map --bg``, ``%%distribute --bg``) and show
        it as a call run here would: the summary, what the nodes printed, the results.
        Ctrl-C stops the wait, not the call (its ``cancel()`` or Cancel button does).
        ``--partial``: the values done so far, as a dict index -> value, of that call or
        (with no name) of the latest call, run here or in the background."""
        args = parse_argstring(self.dist_result, line)
        if args.partial:
            return self._store(self._partial_call(args.call).partial(), args.output)
        call, bg = self._background_call(args.call)
        nodes = bg.nodes if bg is not None else call.nodes
        try:
            try:
                wait_for(call, bg)
            finally:
                self.replaced.say(nodes)
        except KeyboardInterrupt:
            if not call.done():
                raise CallStopped(stopped_waiting(call, args.call, bg)) from None
        try:
            return self._store(show_result(call, bg), args.output)
        except SshdistError:
            say_partial(call, args.call)
            raise

    def _keep_partial(self, exc: BaseException) -> None:
        """A call run here ended short: its values stay reachable."""
        call = self._latest
        if call is not None and call.done() and not finished_well(call):
            exc.partial = call.partial()  # type: ignore[attr-defined]
            say_partial(call)

    def _store(self, results: Any, output: str | None) -> Any:
        """Results into ``-o NAME`` (and nothing to print), or returned to be shown."""
        if output:
            self.shell.user_ns[output] = results
            return None
        return results

    def _partial_call(self, name: str | None) -> DistCall:
        if name:
            return self._background_call(name)[0]
        if self._latest is None:
            raise SshdistError("no call yet: --partial gives the values of a call made before")
        return self._latest

    def _background_call(self, name: str | None) -> tuple[DistCall, BackgroundCall | None]:
        if not name:
            if not self._background:
                raise SshdistError(
                    "no background call yet: start one with %dist_map --bg or %%distribute --bg"
                )
            return self._background[-1].call, self._background[-1]
        try:
            value = self.shell.ev(name)
        except Exception as exc:
            raise SshdistError(f"{name!r} does not name a call: {exc}") from None
        if not isinstance(value, DistCall):
            raise SshdistError(
                f"{name!r} is {value!r}, not a call: start one with %dist_map --bg -o {name} ..."
            )
        bg = next((b for b in reversed(self._background) if b.call is value), None)
        return value, bg
