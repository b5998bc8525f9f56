"""Per-node load average: one row per node (name, running or stopped, Guile version, the
1, 5 and 15 minute load, a sparkline of the recent load), as ipywidgets that refresh in
the background, or as a text table in terminal IPython.

The load is read beside each node's REPL (``read_loadavg``), so a busy node still
reports, and a node that dies turns stopped without touching the others.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from sshdist_kernel import Node, NodeError
from sshdist_kernel.node import read_loadavg

SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], top: float) -> str:
    """The values as block characters scaled to ``top``."""
    if not values:
        return ""
    top = max(top, 1e-9)
    return "".join(
        SPARKS[min(int(v / top * (len(SPARKS) - 1) + 0.5), len(SPARKS) - 1)] for v in values
    )


@dataclass
class LoadRow:
    """What the monitor knows of one node."""

    node: Node
    running: bool = False
    problem: str = ""
    load: tuple[float, float, float] = (0.0, 0.0, 0.0)
    history: deque = field(default_factory=lambda: deque(maxlen=30))

    @property
    def version(self) -> str:
        return self.node.version or "?"

    @property
    def state(self) -> str:
        return "running" if self.running else f"stopped ({self.problem})"


class LoadMonitor:
    """Polls every node's load every ``every`` seconds until ``stop()``."""

    def __init__(self, nodes: list[Node], every: float = 2.0) -> None:
        self.rows = [LoadRow(n) for n in nodes]
        self.every = every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._widget: Any = None
        self.polls = 0

    # -- polling -----------------------------------------------------------------------

    def _poll_one(self, row: LoadRow) -> None:
        try:
            load = read_loadavg(row.node, timeout=min(self.every, 5.0))
            row.running, row.problem = True, ""
            row.load = (load["one"], load["five"], load["fifteen"])
            row.history.append(load["one"])
        except (NodeError, OSError) as exc:
            row.running, row.problem = False, str(exc).split(":")[0][:80]

    def poll(self) -> None:
        """Read every node's load once, all at the same time."""
        threads = [
            threading.Thread(target=self._poll_one, args=(r,), daemon=True) for r in self.rows
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        self.polls += 1
        if self._widget is not None:
            self._update_widget()

    def start(self) -> LoadMonitor:
        """Refresh in a background thread until ``stop()``."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True, name="sshdist load")
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll()
            self._stop.wait(self.every)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(15)

    # -- showing -----------------------------------------------------------------------

    def text(self) -> str:
        top = max([1.0, *(v for r in self.rows for v in r.history)])
        lines = [f"{'node':10} {'state':10} {'guile':7} {'1 min':>6} {'5 min':>6} {'15 min':>6}"]
        for r in self.rows:
            one, five, fifteen = r.load
            lines.append(
                f"{r.node.name:10} {('running' if r.running else 'stopped'):10} "
                f"{r.version:7} {one:6.2f} {five:6.2f} {fifteen:6.2f}  "
                f"{sparkline(list(r.history), top)}"
            )
        return "\n".join(lines)

    def widget(self) -> Any:
        """The ipywidgets view: a header and one row per node."""
        import ipywidgets as w

        if self._widget is None:
            cells = []
            for r in self.rows:
                bars = [
                    w.FloatProgress(min=0.0, max=2.0, description=d, layout=w.Layout(width="190px"))
                    for d in ("1 min", "5 min", "15 min")
                ]
                cells.append(
                    {
                        "name": w.HTML(f"<b>{r.node.name}</b>", layout=w.Layout(width="80px")),
                        "state": w.HTML(layout=w.Layout(width="90px")),
                        "version": w.Label(layout=w.Layout(width="70px")),
                        "bars": bars,
                        "spark": w.Label(layout=w.Layout(width="260px")),
                    }
                )
            self._cells = cells
            self._widget = w.VBox(
                [w.HTML(f"<b>load average</b> (refreshing every {self.every:g} s)")]
                + [
                    w.HBox(
                        [c["name"], c["state"], c["version"], *c["bars"], c["spark"]],
                        layout=w.Layout(align_items="center"),
                    )
                    for c in cells
                ]
            )
            self._update_widget()
        return self._widget

    def _update_widget(self) -> None:
        top = max([2.0, *(v for r in self.rows for v in r.history)])
        for r, c in zip(self.rows, self._cells, strict=True):
            color = "green" if r.running else "red"
            c[
                "state"
            ].value = f"<span style='color:{color}'>{'running' if r.running else 'stopped'}</span>"
            c["version"].value = r.version
            for bar, value in zip(c["bars"], r.load, strict=True):
                bar.max = top
                bar.value = value
                bar.bar_style = "" if r.running else "danger"
            c["spark"].value = sparkline(list(r.history), top)
