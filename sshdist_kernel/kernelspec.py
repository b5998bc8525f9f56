"""Kernelspecs for nodes: ``python -m sshdist_kernel install|list|remove``.

One kernelspec per node, from the template and logos in ``kernelspec/``; several nodes
give several entries in Jupyter's launcher.  Only names and paths are written, never a
password or a key.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

PREFIX = "sshdist-"

_NODE_OPTIONS = ("ssh_config", "user", "port", "identity", "repl_port", "guile", "transport")


def default_name(host: str) -> str:
    """``sshdist-`` and the host, in the characters Jupyter allows in a kernel name."""
    return PREFIX + re.sub(r"[^a-z0-9._-]+", "-", host.lower()).strip("-")


def template_dir() -> Path:
    """``kernelspec/``: beside the package in a source tree, inside it once installed."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "kernelspec_data", here.parent / "kernelspec"):
        if (candidate / "kernel.json").is_file():
            return candidate
    raise FileNotFoundError(f"the kernelspec templates are missing beside {here}")


def kernel_json(
    host: str, display_name: str | None = None, *, name: str | None = None, **options: Any
) -> dict[str, Any]:
    """The kernel.json for ``host``: the template with the Python, host, kernel name (the
    kernel keeps its history under it) and options filled."""
    spec = json.loads((template_dir() / "kernel.json").read_text("utf-8"))
    spec["argv"] = [sys.executable if a == "{python}" else a for a in spec["argv"]]
    spec["argv"] += ["--host", host, "--kernel-name", name or default_name(host)]
    written = {}
    for key in _NODE_OPTIONS:
        value = options.get(key)
        if value not in (None, ""):
            if key in ("ssh_config", "identity"):
                value = str(Path(value).expanduser().resolve())
            spec["argv"] += ["--" + key.replace("_", "-"), str(value)]
            written[key] = value
    spec["display_name"] = display_name or spec["display_name"].replace("{host}", host)
    spec["metadata"]["sshdist"] = {"host": host, **written}
    return spec


def install(
    host: str,
    *,
    name: str | None = None,
    display_name: str | None = None,
    user_install: bool = False,
    prefix: str | None = None,
    **options: Any,
) -> str:
    """Install the kernelspec of ``host`` (``options``: the options of ``make_node``,
    such as ``ssh_config``, ``user`` or ``guile``); return where it went."""
    name = name or default_name(host)
    with tempfile.TemporaryDirectory() as tmp:
        for logo in ("logo-32x32.png", "logo-64x64.png"):
            shutil.copyfile(template_dir() / logo, Path(tmp) / logo)
        spec = kernel_json(host, display_name, name=name, **options)
        (Path(tmp) / "kernel.json").write_text(json.dumps(spec, indent=2) + "\n")
        return KernelSpecManager().install_kernel_spec(tmp, name, user=user_install, prefix=prefix)


def installed() -> dict[str, dict[str, Any]]:
    """The sshdist kernelspecs Jupyter can see: name -> {resource_dir, spec}."""
    specs = KernelSpecManager().get_all_specs()
    return {n: s for n, s in specs.items() if "sshdist" in s["spec"].get("metadata", {})}


def remove(name: str) -> str:
    """Remove an sshdist kernelspec; return the directory it was in."""
    if name not in installed():
        raise NoSuchKernel(name)
    path = KernelSpecManager().remove_kernel_spec(name)
    shutil.rmtree(path, ignore_errors=True)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sshdist_kernel", description="Jupyter kernelspecs for Guile on SSH nodes"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    add = sub.add_parser("install", help="install a kernelspec for one node")
    add.add_argument("--host", required=True, help="ssh_config alias, host or user@host:port")
    add.add_argument("--name", help=f"kernel name (default {PREFIX}HOST)")
    add.add_argument("--display-name", help="name in Jupyter's launcher")
    where = add.add_mutually_exclusive_group()
    where.add_argument("--user-install", action="store_true", help="in the user's Jupyter dir")
    where.add_argument("--sys-prefix", action="store_true", help=f"in {sys.prefix}")
    where.add_argument("--prefix", help="under this prefix (PREFIX/share/jupyter/kernels)")
    add.add_argument(
        "--ssh-config", help="ssh_config file (default ~/.ssh/config, then /etc/ssh/ssh_config)"
    )
    add.add_argument("--user", help="login user on the node")
    add.add_argument("--port", type=int, help="SSH port")
    add.add_argument("--identity", help="private key file (its path is written, not the key)")
    add.add_argument("--repl-port", help="use the node's REPL server: 'unix' or a port")
    add.add_argument("--guile", help="the Guile to run on the node: a path or a command")
    add.add_argument(
        "--transport",
        choices=("paramiko", "openssh"),
        help="paramiko (default) or openssh: the system's ssh client, sharing a ControlMaster",
    )
    sub.add_parser("list", help="list the installed sshdist kernelspecs")
    rm = sub.add_parser("remove", help="remove an sshdist kernelspec")
    rm.add_argument("name")
    args = parser.parse_args(argv)
    if args.command == "install":
        prefix = sys.prefix if args.sys_prefix else args.prefix
        path = install(
            args.host,
            name=args.name,
            display_name=args.display_name,
            user_install=args.user_install or prefix is None,
            prefix=prefix,
            ssh_config=args.ssh_config,
            user=args.user,
            port=args.port,
            identity=args.identity,
            repl_port=args.repl_port,
            guile=args.guile,
            transport=args.transport,
        )
        print(f"installed kernelspec {args.name or default_name(args.host)} in {path}")
    elif args.command == "list":
        for name, info in sorted(installed().items()):
            spec = info["spec"]
            print(f"{name:24} {spec['display_name']:36} {info['resource_dir']}")
    else:
        try:
            print(f"removed {remove(args.name)}")
        except NoSuchKernel:
            print(f"no sshdist kernelspec named {args.name!r}", file=sys.stderr)
            return 1
    return 0
