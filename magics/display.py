"""What the magics show: a table of nodes, and a distributed call's progress in items (a
dist_map's) or expressions (a distribute's), drawn from the data ``callprogress`` keeps.

Progress is drawn from the main thread only (``follow`` hands it the call's events), so
nothing here needs a lock.  A call shorter than a second shows only its one-line
summary; a longer one shows a row per node (items done there, what it runs, straggler
copies and failovers as they happen) and a total (items done of all, items/s, time
left): ipywidgets rows in a notebook, a line a second in a terminal.  Failovers and
straggler copies also print a line the moment they happen.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from sshdist_kernel import Node
from sshdist_kernel.hostlist import compress_hosts

from .callprogress import CallProgress, counted

if TYPE_CHECKING:
    from .progressview import ProgressView

QUIET_SECONDS = 1.0
"""A call shorter than this shows no progress, only its summary."""

TABLE_ROWS_UP_TO = 16
"""Nodes the node table shows a row each; more are host lists, one per Guile version."""


def node_row(node: Node) -> str:
    """``node2        root@10.0.0.2:22         ready   Guile 3.0.9``: where a node is,
    whether its REPL is open, which Guile (what a person asks, not a memory address)."""
    s = node.session
    where = f"{s.user}@{s.host}:{s.port}"
    if node.repl_port is not None:
        where += f" (REPL server {node.repl_port})"
    state = "closed" if node.closed else "ready" if node.ready else "no REPL"
    return f"{node.name:12} {where:28} {state:8} Guile {node.version or '?'}"


class NodeTable:
    """The nodes of a node list, one row each, then one row for each host that failed."""

    def __init__(
        self, nodes: list[Node], seconds: float, failed: dict[str, str] | None = None
    ) -> None:
        self.nodes = nodes
        self.seconds = seconds
        self.failed = failed or {}

    def rows(self) -> list[str]:
        if not self.failed:
            out = [f"{len(self.nodes)} node(s) ready in {self.seconds:.2f} s"]
        elif not self.nodes:
            out = [f"no node came up in {self.seconds:.2f} s: {len(self.failed)} host(s) failed"]
        else:
            total = len(self.nodes) + len(self.failed)
            out = [
                f"{len(self.nodes)} of {total} node(s) ready in {self.seconds:.2f} s; "
                f"{len(self.failed)} host(s) failed"
            ]
        if len(self.nodes) + len(self.failed) <= TABLE_ROWS_UP_TO:
            out += [f"  {node_row(n)}" for n in self.nodes]
            for host, why in self.failed.items():
                out.append(f"  {host:12} FAILED: {why}")
            return out
        # Hundreds of rows would hide what matters: a host list per Guile version, and
        # the failures (their reasons name each host), the first of them in full.
        versions: dict[str, list[str]] = {}
        for n in self.nodes:
            versions.setdefault(n.version or "?", []).append(n.name)
        for version, names in versions.items():
            out.append(
                f"  {compress_hosts(names)}: Guile {version} ({counted(len(names), 'node')})"
            )
        failed = list(self.failed.items())
        for host, why in failed[:TABLE_ROWS_UP_TO]:
            out.append(f"  {host:12} FAILED: {why}")
        if len(failed) > TABLE_ROWS_UP_TO:
            rest = [host for host, _ in failed[TABLE_ROWS_UP_TO:]]
            why = " (the node list's .failed says why)" if self.nodes else ""
            out.append(f"  and {len(rest)} more that failed: {compress_hosts(rest)}{why}")
        return out

    def show(self) -> None:
        print("\n".join(self.rows()))


class StatusLine:
    """The terminal's progress: one line rewritten in place (``\\r``) on a terminal; on
    a file or a pipe, a new line at most every ``QUIET_SECONDS``."""

    def __init__(self) -> None:
        self.shown = False  # a line is on the screen, without its newline
        self.last = 0.0

    def show(self, text: str, now: float) -> None:
        out = sys.stdout
        if out.isatty():
            width = shutil.get_terminal_size().columns - 1  # a wrapped line cannot be redrawn
            # Marked before it is written: a Ctrl-C landing in the write still has the
            # line cleared, not the "interrupted" line run on after it.
            self.shown = True
            out.write(f"\r\x1b[K{text[:width]}")
            out.flush()
        elif now - self.last >= QUIET_SECONDS:
            print(text, flush=True)
        else:
            return
        self.last = now

    def clear(self) -> None:
        """Take the line off the screen, so what is printed next starts a clean line."""
        if self.shown:
            sys.stdout.write("\r\x1b[K")
            sys.stdout.flush()
            self.shown = False


class Progress(CallProgress):
    """A ``dist_map`` or ``distribute`` as its user sees it, from its events: rows per
    node, the total, failovers and copies as they happen, and a summary at the end.

    ``view`` is a widget view already on the page (a background call's), shown from the
    start; ``say`` takes the failover and copy lines (printed when not given); without
    ``terminal`` nothing is printed (a background call, under a terminal's prompt)."""

    def __init__(
        self,
        what: str,
        nodes: list[Node],
        total: int,
        widgets: bool = False,
        view: ProgressView | None = None,
        say: Callable[[str], None] | None = None,
        terminal: bool = True,
    ) -> None:
        super().__init__(what, nodes, total, say or self._print)
        self.widgets = view is not None or (widgets and have_ipywidgets())
        self.view = view
        self.line = StatusLine() if terminal else None

    def _print(self, text: str) -> None:
        if self.line is not None:
            self.line.clear()
        print(text, flush=True)

    def show(self) -> None:
        """Put the widget on the page now, if it is not (and widgets are drawn): with
        ``--stream`` it comes first, above the lines the nodes print."""
        if self.widgets and self.view is None:
            from .progressview import ProgressView

            self.view = ProgressView(self.what, self.total)
            self.view.show()
            self.view.update(self)

    def tick(self) -> None:
        """Called often from the thread that draws: show or refresh the progress."""
        now = time.monotonic()
        if self.view is None and now - self.started < QUIET_SECONDS:
            return
        if self.widgets:
            self.show()
            self.view.update(self, now)  # type: ignore[union-attr]
        elif self.line is not None:
            self.line.show(self.status(now), now)

    def close(self, state: str = "done", say: bool = True) -> None:
        """The call ended: the view shows its final state (in a notebook, a static
        summary in its place, which starts with the summary line), and (``say``) the
        summary line is printed where no such summary shows it."""
        self.ends(state)
        if self.line is not None:
            self.line.clear()
        shown = self.view is not None and self.view.finish(self, state)
        if say and not shown:  # else the summary that replaced the widget says it
            self._print(self.summary(state))


def have_ipywidgets() -> bool:
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True
