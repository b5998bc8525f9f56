"""``make bench``: sshdist against Guile-SSH on the same local nodes, in one run.

Writes ``bench/results.json`` (figure name -> number, milliseconds unless the name
says otherwise) and prints a table.  Anchor figures (``guile_ssh_*``) are measured
here, now, by ``guile_ssh_anchor.scm``; nothing is copied from elsewhere.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sshdist_kernel import make_nodes, node_stop_server, with_ssh
from sshdist_kernel.localnodes import LocalNodes, _free_port

HERE = Path(__file__).resolve().parent
NODE_COUNT = 8

TARGETS = {
    "with_ssh_rtt_ms": ("<=", 0.5),
    "make_node_8_ms": ("<=", 500),
}


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def make_and_close(names: list[str], repl_port: object, ssh_config: str) -> None:
    for node in make_nodes(names, repl_port, ssh_config=ssh_config, start_server=False):
        node.close()


def ours(nodes: LocalNodes) -> dict[str, float]:
    config = str(nodes.ssh_config)
    names = nodes.names[:NODE_COUNT]
    figures: dict[str, float] = {}
    make_and_close(names, None, config)  # warm the machine's caches once
    figures["make_node_8_ms"] = median_ms(lambda: make_and_close(names, None, config), 5)

    node = make_nodes(["node1"], ssh_config=config)[0]
    try:
        for _ in range(50):
            with_ssh(node, "(+ 1 2)")
        figures["with_ssh_rtt_ms"] = median_ms(lambda: with_ssh(node, "(+ 1 2)"), 1000)
        # The floor under make_node on this machine: one exec channel running `true`,
        # which costs whatever the login shell does at start-up.
        figures["exec_channel_true_ms"] = median_ms(lambda: node.session.run("true"), 20)
    finally:
        node.close()

    # A REPL server already running: making a node is connect + open a channel.
    # The local nodes share this machine, so node1's server serves all eight.
    port = _free_port()
    server = make_nodes(["node1"], port, ssh_config=config)[0]
    try:
        figures["make_node_8_server_ms"] = median_ms(lambda: make_and_close(names, port, config), 5)
    finally:
        node_stop_server(server)
        server.close()
    return figures


def guile_ssh(nodes: LocalNodes) -> dict[str, float]:
    if shutil.which("guile") is None:
        raise SystemExit("guile is not installed")
    ports = [str(n.port) for n in nodes.nodes[:NODE_COUNT]]
    done = subprocess.run(
        [
            "guile",
            "-q",
            "--no-auto-compile",
            str(HERE / "guile_ssh_anchor.scm"),
            nodes.user,
            str(nodes.identity),
            str(nodes.known_hosts),
            *ports,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        raise SystemExit(f"the Guile-SSH anchor failed (is guile-ssh installed?):\n{done.stderr}")
    figures = {}
    for line in done.stdout.splitlines():
        name, value = line.split()
        figures[name] = float(value)
    return figures


def table(figures: dict[str, float]) -> str:
    rows = [f"{'figure':34} {'value':>10}  target"]
    for name, value in figures.items():
        target = TARGETS.get(name)
        mark = ""
        if target:
            op, bound = target
            ok = value <= bound if op == "<=" else value >= bound
            mark = f"{op} {bound:g} {'ok' if ok else 'MISSED'}"
        rows.append(f"{name:34} {value:10.3f}  {mark}")
    return "\n".join(rows)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="sshdist-bench-") as where:
        nodes = LocalNodes.up(NODE_COUNT, where)
        try:
            figures = ours(nodes)
            figures.update(guile_ssh(nodes))
        finally:
            nodes.down()
    figures = dict(sorted(figures.items()))
    (HERE / "results.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(table(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
