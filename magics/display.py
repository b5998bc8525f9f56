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
            r = n._rrepl
            version = r.version if r is not None else "?"
            out.append(f"  {n.name:12} {n!r:50} Guile {version}")
        return out

    def show(self) -> None:
        print("\n".join(self.rows()))


class Progress:
    """Hears ``DistEvent``s from worker threads; prints failovers as they come, per-node
    progress once a call has run for a second, and a summary at the end."""

    def __init__(self, what: str, nodes: list[Node], items: int) -> None:
        self.what = what
        self.items = items
        self.nodes = {id(n): n for n in nodes}
        self.done_items = 0
        self.failovers = 0
        self.used: set[int] = set()
        self.started = time.monotonic()
        self.last_report = self.started
        self.lock = threading.Lock()

    def event(self, event: DistEvent) -> None:
        with self.lock:
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
        print(self.summary(failed), flush=True)
