"""What the magics show: a table of nodes, and a distributed call's progress.

Plain text, so terminal IPython and notebooks show the same thing; failovers print the
moment they happen, and every call ends with a one-line summary.
"""

from __future__ import annotations

import threading
import time

from sshdist_kernel import DistEvent, Node, NodeError

QUIET_SECONDS = 1.0
"""A call shorter than this shows no progress, only its summary."""


class NodeTable:
    """The nodes of a node list, one row each."""

    def __init__(self, nodes: list[Node], seconds: float) -> None:
        self.nodes = nodes
        self.seconds = seconds

    def rows(self) -> list[str]:
        out = [f"{len(self.nodes)} node(s) ready in {self.seconds:.2f} s"]
        for n in self.nodes:
            version = n.version or "?"
            out.append(f"  {n.name:12} {n!r:50} Guile {version}")
        return out

    def show(self) -> None:
        print("\n".join(self.rows()))


class Progress:
    """Hears ``DistEvent``s from worker threads; prints failovers as they come, per-node
    progress once a call has run for a second, and a summary at the end."""

    def __init__(self, what: str, nodes: list[Node], items: int, widgets: bool = False) -> None:
        self.what = what
        self.items = items
        self.nodes = {id(n): n for n in nodes}
        self.done_items = 0
        self.failovers = 0
        self.used: set[int] = set()
        self.started = time.monotonic()
        self.last_report = self.started
        self.lock = threading.Lock()
        self.rows = {id(n): NodeProgress(n) for n in nodes}
        self.view: ProgressView | None = None
        self._timer: threading.Timer | None = None
        if widgets:  # shown only if the call is still running after a second
            self._timer = threading.Timer(QUIET_SECONDS, self._show_view)
            self._timer.daemon = True
            self._timer.start()

    def _show_view(self) -> None:
        with self.lock:
            if self.view is None and self._timer is not None:
                self.view = ProgressView(self.what, list(self.rows.values()))
        if self.view is not None:
            self.view.show()

    def event(self, event: DistEvent) -> None:
        with self.lock:
            row = self.rows.get(id(event.node))
            if row is not None:
                row.hear(event)
            if self.view is not None:
                self.view.update()
            if event.kind == "start":
                self.used.add(id(event.node))
            elif event.kind == "done":
                self.done_items += event.job.size
                now = time.monotonic()
                if now - self.started > QUIET_SECONDS and now - self.last_report > QUIET_SECONDS:
                    self.last_report = now
                    print(
                        f"  {self.what}: {self.done_items}/{self.items} done "
                        f"({event.node.name} finished job {event.job.index})",
                        flush=True,
                    )
            elif event.kind == "failed" and isinstance(event.detail, NodeError):
                # A node that broke; a job whose code failed is the call's error instead.
                print(f"  {event.node.name} failed: {event.detail}", flush=True)
            elif event.kind == "moved":
                self.failovers += 1
                print(
                    f"  job {event.job.index} moved from {event.node.name} to {event.detail.name}",
                    flush=True,
                )

    def summary(self, failed: bool = False) -> str:
        seconds = time.monotonic() - self.started
        state = "FAILED after" if failed else "in"
        return (
            f"{self.what}: {self.items} item(s) on {len(self.used)} node(s), "
            f"{self.failovers} failover(s), {state} {seconds:.2f} s"
        )

    def close(self, failed: bool = False) -> None:
        with self.lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self.view is not None:
                self.view.update(final=True)
        print(self.summary(failed), flush=True)


class NodeProgress:
    """One node's share of a call: items started and done, and what became of it."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.started = 0
        self.done = 0
        self.status = "waiting"

    def hear(self, event: DistEvent) -> None:
        if event.kind == "start":
            self.started += event.job.size
            self.status = f"running job {event.job.index}"
        elif event.kind == "done":
            self.done += event.job.size
            self.status = f"finished job {event.job.index}"
        elif event.kind == "failed" and isinstance(event.detail, NodeError):
            self.status = "FAILED"
        elif event.kind == "moved":
            self.status = f"FAILED: job {event.job.index} moved to {event.detail.name}"


class ProgressView:
    """ipywidgets rows, one per node: a bar of items done and the node's status."""

    def __init__(self, what: str, rows: list[NodeProgress]) -> None:
        import ipywidgets as w

        self.rows = rows
        self.bars = [w.IntProgress(min=0, max=1, description=r.node.name) for r in rows]
        self.labels = [w.Label() for _ in rows]
        self.box = w.VBox(
            [w.HTML(f"<b>{what}</b>")]
            + [w.HBox([b, label]) for b, label in zip(self.bars, self.labels, strict=True)]
        )
        self.update()

    def show(self) -> None:
        from IPython.display import display

        display(self.box)

    def update(self, final: bool = False) -> None:
        for row, bar, label in zip(self.rows, self.bars, self.labels, strict=True):
            bar.max = max(row.started, 1)
            bar.value = row.done
            failed = row.status.startswith("FAILED")
            bar.bar_style = "danger" if failed else ("success" if final else "")
            label.value = f"{row.done}/{row.started} items, {row.status}"
