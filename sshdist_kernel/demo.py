"""``make demo``: three local nodes, a few evaluations on each, their load averages,
then dist_map and distribute over them, with one node killed in the middle of a call.

Everything is real: three OpenSSH sshd processes on 127.0.0.1, a Guile REPL on each,
reached with strict host-key checking through the ssh_config they come with."""

from __future__ import annotations

import sys
import tempfile

from . import (
    dist_map,
    distribute,
    make_nodes,
    node_guile_version,
    node_loadavg,
    with_ssh,
)
from .errors import NodeReplError
from .localnodes import LocalNodes

EXPRESSIONS = [
    "(+ 1 2)",
    "(values (expt 2 100) 1/3)",
    '(begin (display "printed, and the value kept: ") (string-upcase "hello"))',
    "(define-module (demo)) (define answer 42) answer",
    "(gethostname)",
]


def show_distributed(nodes: list) -> None:
    """dist_map and distribute over the three nodes, then a node killed mid-call."""
    squares = dist_map(nodes, "(lambda (x) (* x x))", range(12))
    print(f"dist_map (lambda (x) (* x x)) over 0..11 on 3 nodes:\n  {squares}")
    print(f"distribute: {distribute(nodes, '(+ 1 2)', '(gethostname)', '(version)')}")

    victim = nodes[1]
    # node2's guile dies at its first item, as in a crash: SIGKILL, no goodbye.
    dies = f"(when (= (getpid) {victim.rrepl.pid}) (kill (getpid) SIGKILL))"
    slow = f"(lambda (x) {dies} (usleep 30000) (* 2 x))"
    result = dist_map(nodes, slow, range(30))
    print(
        f"dist_map with {victim.name}'s guile killed mid-call: complete and in order: "
        f"{result == [2 * x for x in range(30)]}"
    )
    for failure in result.failures:
        print(f"  failed: {failure}")
    for move in result.moves:
        print(f"  {move}")
    print()


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="sshdist-demo-") as where:
        local = LocalNodes.up(3, where)
        try:
            print(local.describe(), end="\n\n")
            nodes = make_nodes(local.names, ssh_config=str(local.ssh_config))
            for node in nodes:
                print(f"{node.name}: {node}  Guile {node_guile_version(node)}")
                for expr in EXPRESSIONS:
                    result = with_ssh(node, expr)
                    value, num, module, language = result
                    nums = " ".join(f"${n}" for n in (num if isinstance(num, tuple) else [num]))
                    printed = f"  printed {result.output!r}" if result.output else ""
                    print(f"  {expr}\n    => {value!r}  {nums}  {module}  {language}{printed}")
                try:
                    with_ssh(node, "(car '())")
                except NodeReplError as exc:
                    print(f"  (car '())\n    => NodeReplError {exc.key}: {exc.message}")
                load = node_loadavg(node).value
                print(
                    f"  load average: {load['one']:.2f} {load['five']:.2f} "
                    f"{load['fifteen']:.2f}  ({load['scheduling_entities'][1]} tasks)\n"
                )
            show_distributed(nodes)
            for node in nodes:
                node.close()
        finally:
            local.down()
    print("local nodes stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
