"""The latency figures of ``make bench`` (issue 19): the main calls on local nodes reached
through the project's ``DelayRelay`` (this kernel has no ``sch_netem``) at 5 and 50 ms
one-way delay, RTT 10 and 100 ms; each in milliseconds and as the multiple the issue
asks for.  Rows ``lat5_*`` and ``lat50_*``; ``lat0_*`` are the same calls through the
same relay at no delay, the zero-latency times the ``..._rtts`` rows subtract (so the
relay's own cost, a hop through one more process, cancels out).

The relay runs in a process of its own (``RelayProcess``): in this one it would wait
for the client's GIL, and the client for it.  ``lat*_relay_cpu_pct`` is that process's
CPU, in % of one core, while it carried the 100,000-item ``dist_map``.

Alone (a few minutes; prints the rows as JSON): ``python bench/latency.py``.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from timing import median_ms

from sshdist_kernel import (
    DistEvent,
    Node,
    NodeTimeoutError,
    dist_map,
    distribute,
    make_node,
    make_nodes,
    with_ssh,
)
from sshdist_kernel.localnodes import LocalNodes
from sshdist_kernel.relayprocess import RelayProcess

DELAYS_MS = (5, 50)
NODE_COUNT = 8
BOUND_S = 60.0
"""The longest one ``dist_map`` may take here; past it the call times out and its row
holds the bound (a lower bound), with ``..._timed_out`` 1.  Today's scheduler sends one
item per round trip past a ~50 ms RTT: 100,000 items would take half an hour."""
BUDGET_S = 30.0
"""Repeats of a slow figure stop once its runs have taken this long."""
SQUARE = "(lambda (x) (* x x))"
BIG = 100_000
SLEEPY_PROC = "(lambda (x) (usleep 10000) x)"
"""10 ms of node time an item (a sleep: the nodes share 2 cores)."""
SLEEPY_ITEMS = 300
SLEEPY_IDEAL_MS = SLEEPY_ITEMS * 10 / 3
"""The compute-only ideal of 300 items of 10 ms on 3 nodes."""
PINGS = 30


def latency_figures(nodes: LocalNodes, where: str | os.PathLike[str]) -> dict[str, float]:
    """Every ``lat*`` row, on the first ``NODE_COUNT`` of ``nodes`` (running)."""
    raw: dict[int, dict[str, float]] = {}
    with _echo_server() as echo_port:
        targets = [n.port for n in nodes.nodes[:NODE_COUNT]] + [echo_port]
        for delay_ms in (0, *DELAYS_MS):
            with RelayProcess(targets, delay_ms / 1000) as relay:
                config = nodes.config_through(relay.ports, Path(where) / f"lat{delay_ms}")
                rtt = _tcp_rtt_ms(relay.ports[echo_port])
                raw[delay_ms] = {"rtt_ms": rtt, **_calls(nodes.names, str(config), relay, rtt)}
    figures = {f"lat0_{name}": value for name, value in raw[0].items()}
    for delay_ms in DELAYS_MS:
        figures.update(_multiples(f"lat{delay_ms}_", raw[delay_ms], raw[0]))
    return figures


def _multiples(prefix: str, at: dict[str, float], zero: dict[str, float]) -> dict[str, float]:
    """The rows at one delay: its times, and each as the issue's multiple."""
    rtt = at["rtt_ms"]
    rows = dict(at)
    rows["with_ssh_rtts"] = at["with_ssh_ms"] / rtt
    rows["make_node_1_rtts"] = (at["make_node_1_ms"] - zero["make_node_1_ms"]) / rtt
    rows["distribute_8_rtts"] = at["distribute_8_ms"] / rtt
    rows["dist_map_100k_extra_rtts"] = (at["dist_map_100k_ms"] - zero["dist_map_100k_ms"]) / rtt
    return {prefix + name: value for name, value in rows.items()}


@contextmanager
def _echo_server() -> Iterator[int]:
    """A TCP echo on 127.0.0.1 for the round trip figure; yields its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    conns: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conns.append(conn)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while data := _recv(conn):
                conn.sendall(data)
            conn.close()

    thread = threading.Thread(target=serve, name="echo", daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        for sock in [listener, *conns]:  # shutdown wakes the thread from accept/recv
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        thread.join(10)


def _recv(conn: socket.socket) -> bytes:
    try:
        return conn.recv(4096)
    except OSError:
        return b""


def _tcp_rtt_ms(port: int) -> float:
    """The round trip: the median of ``PINGS`` one-byte TCP echoes through the relay
    (to an echo server in this process, after 5 to warm up) -- what any small request
    and its answer pay, with no SSH or Guile in it."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def ping() -> None:
            sock.sendall(b"x")
            if sock.recv(1) != b"x":
                raise SystemExit("the echo through the delay relay answered wrongly")

        for _ in range(5):
            ping()
        return median_ms(ping, PINGS)


def _calls(names: list[str], config: str, relay: RelayProcess, rtt_ms: float) -> dict[str, float]:
    """The timed calls through one relay; the slow ones repeat fewer times."""
    slow = rtt_ms > 50
    few = 20 if slow else 100

    def make_one() -> None:
        make_node(names[0], ssh_config=config).close()

    make_one()  # warm: this config's first parse, the node's caches
    figures = {"make_node_1_ms": median_ms(make_one, 5 if slow else 9)}
    eight = make_nodes(names[:NODE_COUNT], ssh_config=config)
    try:
        node = eight[0]
        for _ in range(5):
            with_ssh(node, "(+ 1 2)", timeout=BOUND_S)
        figures["with_ssh_ms"] = median_ms(lambda: with_ssh(node, "(+ 1 2)", timeout=BOUND_S), few)
        exprs = ["(+ 1 2)"] * len(eight)
        if distribute(eight, *exprs, timeout=BOUND_S) != (3,) * len(eight):
            raise SystemExit("distribute through the delay relay gave wrong results")
        figures["distribute_8_ms"] = median_ms(
            lambda: distribute(eight, *exprs, timeout=BOUND_S), few
        )
        three = eight[:3]
        dist_map(three, SQUARE, range(10), timeout=BOUND_S)  # warm
        figures.update(_sleepy(three))
        figures.update(_big(three, relay.pid))  # last: a timeout interrupts the nodes
    finally:
        for n in eight:
            n.close()
    return figures


class _Count:
    """Chunks and items a ``dist_map`` has finished, from its ``done`` events."""

    def __init__(self) -> None:
        self.chunks = self.items = 0

    def __call__(self, event: DistEvent) -> None:
        if event.kind == "done":
            self.chunks += 1
            self.items += event.job.size


def _bounded(
    three: list[Node], proc: str, items: list[int], name: str, runs: int
) -> tuple[list[float], dict[str, float]]:
    """``dist_map`` of ``items`` repeated (at most ``runs`` times, within ``BUDGET_S``),
    each run within ``BOUND_S``: the times, and the rows a timeout leaves (else none)."""
    expected = [x * x for x in items] if proc == SQUARE else items
    times: list[float] = []
    spent = 0.0
    while len(times) < runs and spent < BUDGET_S:
        count = _Count()
        t = time.perf_counter()
        try:
            got = dist_map(three, proc, items, timeout=BOUND_S, on_event=count)
        except NodeTimeoutError:
            print(
                f"latency bench: {name} timed out after {BOUND_S:g} s "
                f"({count.items} of {len(items)} items done, in {count.chunks} chunks)",
                file=sys.stderr,
            )
            return [BOUND_S * 1000], {
                f"{name}_timed_out": 1.0,
                f"{name}_items_done": float(count.items),
                f"{name}_chunks": float(count.chunks),
            }
        took = time.perf_counter() - t
        if not times and got != expected:
            raise SystemExit(f"{name} through the delay relay gave wrong results")
        times.append(took * 1000)
        spent += took
    return times, {f"{name}_timed_out": 0.0, f"{name}_chunks": float(count.chunks)}


def _sleepy(three: list[Node]) -> dict[str, float]:
    """300 items of 10 ms on 3 nodes (median), against the compute-only ideal, 1 s."""
    times, rows = _bounded(three, SLEEPY_PROC, list(range(SLEEPY_ITEMS)), "dist_map_300x10ms", 3)
    took = statistics.median(times)
    return {
        **rows,
        "dist_map_300x10ms_ms": took,
        "dist_map_300x10ms_ratio": took / SLEEPY_IDEAL_MS,
    }


def _big(three: list[Node], relay_pid: int) -> dict[str, float]:
    """100,000 integers squared on 3 nodes, best of the runs (as ``dist_map_100k_3nodes_ms``
    but best, not median: the least noise), and the relay's CPU meanwhile."""
    cpu, t = _cpu_seconds(relay_pid), time.perf_counter()
    times, rows = _bounded(three, SQUARE, list(range(BIG)), "dist_map_100k", 5)
    wall = time.perf_counter() - t
    rows["relay_cpu_pct"] = (_cpu_seconds(relay_pid) - cpu) / wall * 100
    return {**rows, "dist_map_100k_ms": min(times)}


def _cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of process ``pid`` (from ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    """Start local nodes, measure, print the rows as JSON."""
    with tempfile.TemporaryDirectory(prefix="sshdist-bench-latency-") as where:
        nodes = LocalNodes.up(NODE_COUNT, where)
        try:
            figures = latency_figures(nodes, where)
        finally:
            nodes.down()
    print(json.dumps(dict(sorted(figures.items())), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
