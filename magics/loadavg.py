"""Per-node load average, a dashboard worth leaving open: per node its state, Guile
version, cores, the 1, 5 and 15 minute load against those cores and a chart of the recent
1-minute load (drawn by ``loadchart``); ipywidgets refreshing in place in a notebook, a
text table in a terminal.

The load is read beside each node's REPL, every read bounded, so a busy node still
reports; each node has its own watcher thread, so one that hangs turns stopped without
slowing the others, and keeps its history."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from html import escape
from typing import Any

from sshdist_kernel import Node, NodeError, NodeTimeoutError
from sshdist_kernel.node import read_cpu_count, read_loadavg

from .loadbar import bar_scale, load_bar, overload_words
from .loadchart import CHART_COLUMN, HISTORY, STOPPED, chart, chart_title, sparkline
from .loadgrid import load_grid
from .nodegrid import GRID_EVERY, ROWS_UP_TO

MAX_EVERY = 86400
"""The longest refresh period: a day."""

MAX_BACKOFF = 30.0
"""The longest wait between attempts to reconnect a node whose connection dropped."""

TEXT_SAMPLES = 20  # the terminal's sparkline: the most recent samples only
RUNNING = "#2e7d32"
COLUMNS = {"node": 64, "state": 64, "guile": 48, "cores": 44, "1 min": 120, "5 min": 120}
COLUMNS |= {"15 min": 120, "1 min load": CHART_COLUMN, "read at": 64}  # the widget rows' widths


@dataclass
class LoadRow:
    """What the monitor knows of one node; ``history`` holds None where it was away,
    ``times`` when each of its entries was taken (``time.monotonic()``)."""

    node: Node
    cores: int | None = None
    version: str = "?"
    running: bool = False
    problem: str = "not read yet"
    load: tuple[float, float, float] | None = None
    read_at: float | None = None
    history: deque[float | None] = field(default_factory=lambda: deque(maxlen=HISTORY))
    times: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY))
    lock: threading.Lock = field(default_factory=threading.Lock)  # one read at a time
    backoff: float = 0.0  # seconds to the next reconnection, after one failed
    retry_at: float = 0.0  # no reconnection before this (time.monotonic())

    def answered(self, load: tuple[float, float, float]) -> None:
        now = time.monotonic()
        if not self.running and self.history:  # back after a failure: a gap in the line
            self.history.append(None)
            self.times.append(now)
        self.running, self.problem, self.load = True, "", load
        self.read_at = time.time()
        self.history.append(load[0])
        self.times.append(now)

    def ages(self) -> list[float]:
        """Seconds since each entry of ``history`` was taken."""
        now = time.monotonic()
        return [now - t for t in self.times]

    def state(self) -> str:
        return "running" if self.running else "stopped"

    def seen(self) -> str:
        return time.strftime("%H:%M:%S", time.localtime(self.read_at)) if self.read_at else "-"


def _reason(exc: Exception, timeout: float) -> str:
    """A few words for a stopped row: the errors name the host, which the row shows."""
    text = str(exc)
    if isinstance(exc, NodeTimeoutError) or any(
        words in text for words in ("imeout", "did not answer", "speak SSH")
    ):  # paramiko's channel open; a reconnection's socket or handshake
        return f"no answer in {timeout:g} s"
    if "refused" in text:
        return "connection refused"
    if "closed" in text:
        return "connection closed"
    return text if len(text) <= 120 else text[:119] + "…"


class LoadMonitor:
    """Reads every node's load every ``every`` seconds from ``start()`` to ``stop()``;
    ``widgets`` says whether showing it means the ipywidgets view or the text table."""

    def __init__(self, nodes: list[Node], every: float = 2.0, widgets: bool = False) -> None:
        if not every > 0:
            raise ValueError(f"the seconds between refreshes must be above 0, not {every:g}")
        if not every <= MAX_EVERY:  # inf (and nan) would make the watchers' waits fail
            raise ValueError(
                f"the seconds between refreshes must be at most {MAX_EVERY} (a day), not {every:g}"
            )
        self.rows = [LoadRow(n) for n in nodes]
        self.every = every
        self.timeout = min(max(every, 2.0), 5.0)  # a read's bound; a busy node needs a moment
        self.widgets = widgets
        self._stop = threading.Event()  # a fresh one per start(): old watchers keep theirs
        self._threads: list[threading.Thread] = []
        self._draw_lock = threading.Lock()
        self._view: dict[int, list[Any]] | None = None  # each row's widgets, by id(row)
        self._grid: Any = None  # past ROWS_UP_TO nodes, a grid of squares instead
        self._grid_drawn = float("-inf")
        self._grid_due = False  # a redraw is waiting for its turn

    def __repr__(self) -> str:
        names = ", ".join(r.node.name for r in self.rows[:ROWS_UP_TO])
        if len(self.rows) > ROWS_UP_TO:
            names += f", ... ({len(self.rows)} nodes)"
        state = "refreshing" if self.refreshing else "not refreshing"
        return f"<LoadMonitor of {names}, every {self.every:g} s, {state}>"

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        """What IPython shows for ``mon``: the live rows in a notebook (another view of
        the same widgets), the table in a terminal (its own lines, under ``Out[n]:``)."""
        if self.widgets:
            return self.widget()._repr_mimebundle_(**kwargs)
        return {"text/plain": self.text()}

    @property
    def refreshing(self) -> bool:
        return any(t.is_alive() for t in self._threads) and not self._stop.is_set()

    # -- reading -----------------------------------------------------------------------

    def _reconnect(self, row: LoadRow) -> bool:
        """Reopen a node's dropped connection, not more often than its backoff allows
        (doubling from ``every`` to ``MAX_BACKOFF`` while it fails); whether it is open."""
        node = row.node
        if node.session.is_connected():
            return True
        if node.closed or time.monotonic() < row.retry_at:  # closed by its user: left so
            return False
        try:
            node.reconnect(timeout=self.timeout)
        except (NodeError, OSError) as exc:
            row.running, row.problem = False, _reason(exc, self.timeout)
            row.backoff = min(max(2 * row.backoff, self.every), MAX_BACKOFF)
            row.retry_at = time.monotonic() + row.backoff
            return False
        row.backoff = 0.0
        return True

    def _read(self, row: LoadRow) -> None:
        with row.lock:
            if not self._reconnect(row):  # it keeps its history; the line has a gap
                row.running = False
                if row.node.closed or row.problem in ("", "not read yet"):
                    row.problem = "connection closed"
                row.version = row.node.version or row.version
                self._draw(row)
                return
            try:
                if row.cores is None:  # once per monitor: the core count does not change
                    row.cores = read_cpu_count(row.node, timeout=self.timeout)
                load = read_loadavg(row.node, timeout=self.timeout)
            except (NodeError, OSError) as exc:
                row.running, row.problem = False, _reason(exc, self.timeout)
            else:
                row.answered((load["one"], load["five"], load["fifteen"]))
            row.version = row.node.version or row.version
        self._draw(row)

    def poll(self) -> None:
        """Read every node's load once, all at the same time, and wait for the answers
        (each read is bounded, so a node that hangs costs at most a few seconds)."""
        threads = [threading.Thread(target=self._read, args=(r,), daemon=True) for r in self.rows]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 5 * self.timeout  # a watcher's read, then ours
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def reading(self) -> list[str]:
        """The nodes whose load is being read now (a read is bounded by ``timeout``)."""
        return [r.node.name for r in self.rows if r.lock.locked()]

    def start(self) -> LoadMonitor:
        """Refresh in the background, a thread per node, until ``stop()``."""
        if not self.refreshing:
            self._stop = stop = threading.Event()
            self._threads = [
                threading.Thread(target=self._watch, args=(r, stop), daemon=True, name="load")
                for r in self.rows
            ]
            for t in self._threads:
                t.start()
            self._draw_title()
        return self

    def _watch(self, row: LoadRow, stop: threading.Event) -> None:
        began = time.monotonic()  # whoever started us has just read the load
        while not stop.wait(max(0.0, began + self.every - time.monotonic())):
            began = time.monotonic()
            self._read(row)

    def stop(self) -> None:
        """Stop refreshing; the rows keep what they show."""
        self._stop.set()
        deadline = time.monotonic() + 4 * self.timeout  # a watcher's first read is two
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self._draw_title()
        self._draw_grid(now=True)

    # -- showing -----------------------------------------------------------------------

    def text(self) -> str:
        """The table for a terminal: one line per node, the sparkline's top at its cores."""
        head = ["node", "state", "guile", "cores", "1 min", "5 min", "15 min", "read at"]
        lines = ["{:10} {:8} {:6} {:>5} {:>11} {:>11} {:>11}  {:8}".format(*head)]
        lines[0] += f"  last {TEXT_SAMPLES} samples of the 1 min load (full: cores)"
        lines[0] += "; a load past the cores has a !"
        for r in self.rows:
            # A row has a load only once it has its cores: they are read first.
            loads = [f"{v:5.2f} {overload_words(v, r.cores):5}" for v in r.load] if r.load else []
            loads = loads or ["-"] * 3
            spark = sparkline(list(r.history)[-TEXT_SAMPLES:], r.cores) if r.cores else ""
            line = (
                f"{r.node.name:10} {r.state():8} {r.version:6} {r.cores or '?':>5} "
                + " ".join(f"{v:>11}" for v in loads)
                + f"  {r.seen():8}  {spark:{TEXT_SAMPLES}}"
            )
            lines.append(line.rstrip() if r.running else f"{line}  ({r.problem})")
        return "\n".join(lines)

    def widget(self) -> Any:
        """The live view: a header row and one row per node.  The same widgets each
        time, so displaying it again shows another view of the same live rows."""
        import ipywidgets as w

        if len(self.rows) > ROWS_UP_TO:
            if self._grid is None:
                self._title, self._grid = w.HTML(), w.HTML()
                self._box = w.VBox([self._title, self._grid])
                self._draw_title()
                self._draw_grid(now=True)
            return self._box
        if self._view is None:
            kinds = [w.HTML, w.HTML, w.Label, w.Label, w.HTML, w.HTML, w.HTML, w.HTML, w.Label]
            self._title = w.HTML()
            self._view = {
                id(r): [
                    k(layout=w.Layout(width=f"{px}px"))
                    for k, px in zip(kinds, COLUMNS.values(), strict=True)
                ]
                for r in self.rows
            }
            titles = [*COLUMNS][:-2] + [chart_title(self.every), "read at"]
            head = [
                w.HTML(f"<span style='color:#666'>{t}</span>", layout=w.Layout(width=f"{px}px"))
                for t, px in zip(titles, COLUMNS.values(), strict=True)
            ]
            self._box = w.VBox(
                [self._title, w.HBox(head)]
                + [w.HBox(p, layout=w.Layout(align_items="center")) for p in self._view.values()]
            )
            self._draw_title()
            for r in self.rows:
                self._draw(r)
        return self._box

    def _draw_title(self) -> None:
        if self._view is not None or self._grid is not None:
            how = f"refreshing every {self.every:g} s" if self.refreshing else "not refreshing"
            what = (
                "a square per node, by its 1 minute load against its cores"
                if self._grid is not None
                else "bars run to twice the node's cores (further if the load does), the mark"
                " at its cores (the chart's dashed line), orange past them"
            )
            self._title.value = (
                f"<b>load average</b> &nbsp;<span style='color:#666'>{how}; {what}</span>"
            )

    def _draw_grid(self, now: bool = False) -> None:
        """Redraw the grid: at once if ``now``; else at most once per ``GRID_EVERY``,
        a read that comes sooner being drawn when that time is up."""
        if self._grid is None:
            return
        with self._draw_lock:
            wait = 0.0 if now else self._grid_drawn + GRID_EVERY - time.monotonic()
            if wait <= 0:
                self._grid_drawn, self._grid_due = time.monotonic(), False
                self._grid.value = load_grid(self.rows)
            elif not self._grid_due:
                self._grid_due = True
                later = threading.Timer(wait, self._draw_grid, kwargs={"now": True})
                later.daemon = True
                later.start()

    def _draw(self, row: LoadRow) -> None:
        if self._grid is not None:
            self._draw_grid()
            return
        if self._view is None:
            return
        with self._draw_lock:
            name, state, version, cores_label, *bars, graph, seen = self._view[id(row)]
            cores = row.cores or 1
            name.value = f"<b>{escape(row.node.name)}</b>"
            state.value = (
                f"<span style='color:{RUNNING}'>running</span>"
                if row.running
                else f"<b style='color:{STOPPED}' title='{escape(row.problem)}'>stopped</b>"
            )
            version.value = row.version
            cores_label.value = str(row.cores or "?")
            scale = bar_scale(row.load or (), cores)  # the row's three bars share it
            for bar, v in zip(bars, row.load or (None, None, None), strict=True):
                bar.value = load_bar(v, cores, scale, row.running)
            stopped = "" if row.running else f"stopped: {row.problem}"
            # A read may take its whole bound before the next sample: slower samples on a
            # busy machine, not a node away (that is a failed read, a None in history).
            gap_after = max(2.5 * self.every, self.every + self.timeout)
            graph.value = chart(
                list(row.history), cores, self.every, stopped, row.ages(), gap_after
            )
            seen.value = row.seen()
