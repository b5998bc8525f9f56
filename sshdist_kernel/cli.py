"""The ``sshdist`` command: ``nodes up|status|down`` for local nodes, ``cluster
up|status|down`` for a local login node and compute nodes, ``rrepl HOST``."""

from __future__ import annotations

import argparse
import sys

from .errors import NodeError
from .localcluster import AUTH_MODES
from .localcluster import DEFAULT_DIR as CLUSTER_DIR
from .localnodes import DEFAULT_DIR, LocalNodes, LocalNodesError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sshdist", description=(__doc__ or "").replace("``", ""))
    sub = p.add_subparsers(dest="command", required=True)
    nodes = sub.add_parser("nodes", help="local sshd nodes on 127.0.0.1")
    nsub = nodes.add_subparsers(dest="action", required=True)
    up = nsub.add_parser("up", help="start N local nodes")
    up.add_argument("count", type=int)
    for sp in (
        up,
        nsub.add_parser("status", help="show the local nodes"),
        nsub.add_parser("down", help="stop the local nodes"),
    ):
        sp.add_argument("--dir", default=str(DEFAULT_DIR), help="where keys and configs live")
    cluster = sub.add_parser(
        "cluster", help="a local login node (TOTP) and compute nodes behind it (needs root)"
    )
    csub = cluster.add_subparsers(dest="action", required=True)
    cup = csub.add_parser("up", help="start a login node and N compute nodes cn01..")
    cup.add_argument("count", type=int, help="how many compute nodes")
    cup.add_argument("--auth", choices=AUTH_MODES, default="publickey+totp")
    for sp in (
        cup,
        csub.add_parser("status", help="show the local cluster"),
        csub.add_parser("down", help="stop the local cluster and remove its rules"),
    ):
        sp.add_argument("--dir", default=str(CLUSTER_DIR), help="where keys and configs live")
    rr = sub.add_parser("rrepl", help="an interactive Guile REPL on HOST over SSH")
    rr.add_argument("host", help="ssh_config alias, host, user@host or user@host:port")
    rr.add_argument(
        "-F",
        "--ssh-config",
        help="ssh_config file (default ~/.ssh/config, then /etc/ssh/ssh_config)",
    )
    rr.add_argument("-i", "--identity", help="private key file")
    rr.add_argument("--repl-port", help="use the node's REPL server: 'unix' or a port")
    rr.add_argument("--guile", help="the Guile to run on HOST: a path or a command")
    rr.add_argument(
        "--transport",
        choices=("paramiko", "openssh"),
        default="paramiko",
        help="paramiko (default) or openssh: the system's ssh client and its ControlMaster",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "nodes":
            if args.action == "up":
                nodes = LocalNodes.up(args.count, args.dir, persist=True)
            else:
                nodes = LocalNodes(args.dir)
                if args.action == "down":
                    nodes.down()
                    print(f"stopped {len(nodes.nodes)} local node(s) in {nodes.dir}")
                    return 0
            print(nodes.describe())
            return 0
        if args.command == "cluster":
            from .localcluster import LocalCluster

            if args.action == "up":
                cluster = LocalCluster.up(args.dir, args.count, auth=args.auth, persist=True)
            else:
                cluster = LocalCluster(args.dir)
                if args.action == "down":
                    cluster.down()
                    print(f"stopped the local cluster in {cluster.dir}")
                    return 0
            print(cluster.describe())
            return 0
        from .node import make_node
        from .rreplshell import rrepl

        port = args.repl_port
        port = int(port) if port and port.isdigit() else port
        options = {"ssh_config": args.ssh_config, "identity": args.identity, "guile": args.guile}
        options["transport"] = args.transport
        with make_node(args.host, port, **options) as node:
            rrepl(node)
        return 0
    except (LocalNodesError, NodeError, ValueError) as exc:  # ValueError: bad arguments
        print(f"sshdist: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
