"""What each magic takes: its options and their help, as ``magic_arguments`` reads them
(``magics`` says what each magic does with them; ``%name?`` and the manual show them)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from IPython.core.magic_arguments import argument, kwds

from sshdist_kernel import MAX_CONNECTING
from sshdist_kernel.transports import TRANSPORTS

_BG_HELP = (
    "return at once with the call (a Future: .result(), .cancel(), .progress, await); "
    "a notebook shows its progress and a Cancel button; %%dist_result NAME shows the result"
)

_GROUP_HELP = (
    "how what the nodes printed is shown after the call: by node ([stdout:node1]), or "
    "folded (each distinct text once under the nodes that printed it, "
    "[stdout:node[01-12,15]]: the default past 8 nodes)"
)

_STREAM_HELP = (
    "print what the nodes print as it arrives, each line labelled with its node "
    "([node1] text), instead of grouped by node after the call"
)


def arguments(*decorators: Any) -> Callable[[Any], Any]:
    """``argument`` decorators as one, applied as if stacked in this order: put it under
    ``@magic_arguments()``, where they were."""

    def apply(func: Any) -> Any:
        for decorator in reversed(decorators):
            func = decorator(func)
        return func

    return apply


CALL_OPTIONS = (
    argument("-o", "--output", metavar="NAME", help="store the results (or the call) here"),
    argument("--timeout", type=float, metavar="S", help="seconds the whole call may take"),
    argument("--stream", action="store_true", help=_STREAM_HELP),
    argument("--group-outputs", choices=("node", "fold"), help=_GROUP_HELP),
    argument("--bg", action="store_true", help=_BG_HELP),
)
"""The options of the magics that make a distributed call (``%%distribute``, ``%dist_map``)."""

NODES_ARGUMENTS = arguments(
    argument("-o", "--output", metavar="NAME", help="store the node list in this variable"),
    argument("-F", "--ssh-config", help="ssh_config file for the host names"),
    argument(
        "--local",
        type=int,
        metavar="N",
        help="start N local nodes (real sshd on 127.0.0.1) and use them",
    ),
    argument(
        "--hostfile",
        action="append",
        metavar="FILE",
        help="the hosts in FILE: one host or host list a line, # comments",
    ),
    argument(
        "--slurm",
        action="store_true",
        help="the nodes of the current Slurm allocation (SLURM_JOB_NODELIST)",
    ),
    argument(
        "--strict",
        action="store_true",
        help="fail if any host fails (and close the nodes made), instead of showing "
        "the hosts that did not come up below the nodes that did",
    ),
    argument(
        "--max-connecting",
        type=int,
        default=MAX_CONNECTING,
        metavar="N",
        help=f"connect to at most N hosts at once (default {MAX_CONNECTING})",
    ),
    argument(
        "--guile",
        metavar="PATH",
        help="the Guile to run on these nodes: a path or a command (default guile)",
    ),
    argument(
        "--transport",
        choices=TRANSPORTS,
        help="how to reach the hosts: paramiko (default) or openssh, the system's ssh "
        "client with one shared ControlMaster a host (an open master of yours is used)",
    ),
    argument(
        "hosts",
        nargs="*",
        help="ssh_config aliases, hosts, user@host:port, host lists such as cn[01-32],login1",
    ),
)
"""``%nodes``: the hosts, and how to reach them."""

LOADAVG_ARGUMENTS = arguments(
    argument("-o", "--output", metavar="NAME", help="store the monitor in this variable"),
    argument("--every", type=float, default=2.0, help="seconds between refreshes"),
    argument("--stop", action="store_true", help="stop the monitors this magic started"),
    argument("nodes", nargs="?", help="the nodes: a variable, a list of names or a node"),
)
"""``%loadavg``: the nodes, how often, or stop."""

WITH_SSH_ARGUMENTS = arguments(
    argument("-o", "--output", metavar="NAME", help="store the value in this variable"),
    argument("node", help="a node, or a variable holding one (the first of a list)"),
)
"""``%%with_ssh``: the node."""

DISTRIBUTE_ARGUMENTS = arguments(
    *CALL_OPTIONS,
    argument("nodes", help="the nodes: a variable, a list of names or a node"),
)
"""``%%distribute``: the call's options, then the nodes."""

DIST_MAP_ARGUMENTS = arguments(
    kwds(
        usage="%(prog)s [-o NAME] [--timeout S] [--stream] [--group-outputs node|fold] [--bg] "
        "NODES PROC LST"
    ),
    *CALL_OPTIONS,
    argument("nodes", nargs="?", metavar="NODES", help="Python: a variable, names or a node"),
    argument("proc", nargs="?", metavar="PROC", help="Scheme: a lambda or a procedure's name"),
    argument(
        "lst", nargs="?", metavar="LST", help="Python: a sequence (as a cell magic, the cell)"
    ),
)
"""``%dist_map``: the call's options, then NODES PROC LST, there for its help: the line
after the options (Python, then Scheme, then Python) is read by ``magicline``."""

DIST_RESULT_ARGUMENTS = arguments(
    argument("-o", "--output", metavar="NAME", help="store the results in this variable"),
    argument(
        "--partial",
        action="store_true",
        help="the values done so far, by index (of a call cancelled, failed or running)",
    ),
    argument(
        "call", nargs="?", help="the call (a variable set by --bg -o); the latest --bg call if none"
    ),
)
"""``%dist_result``: which call, and whether only its values so far."""
