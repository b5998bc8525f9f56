"""``make demo``: three local nodes, a few evaluations on each, their load averages.

Everything is real: three OpenSSH sshd processes on 127.0.0.1, a Guile REPL on each,
reached with strict host-key checking through the ssh_config they come with."""

from __future__ import annotations

import sys
import tempfile

from . import make_nodes, node_guile_version, node_loadavg, with_ssh
from .errors import NodeReplError
from .localnodes import LocalNodes

EXPRESSIONS = [
    "(+ 1 2)",
    "(values (expt 2 100) 1/3)",
    '(begin (display "printed, and the value kept: ") (string-upcase "hello"))',
    "(define-module (demo)) (define answer 42) answer",
    "(gethostname)",
]


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
            for node in nodes:
                node.close()
        finally:
            local.down()
    print("local nodes stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
