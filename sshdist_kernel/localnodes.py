"""Real OpenSSH sshd instances on 127.0.0.1, each with its own host key, one client key,
an ssh_config naming them node1..nodeN and a matching known_hosts.

The default for demos and the fixture for tests: both run exactly this code.  Nodes end
with the process that started them (``ownerwatch``) unless started with ``persist=True``,
as ``sshdist nodes up`` does.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from . import ownerwatch
from .localsshd import (
    LocalNodesError,
    SshdDir,
    _alive,
    _free_port,
    _keygen,
    _known_host,
    _port_open,
    _spawn,
    _sshd,
    _stop_tree,
    _wait_started,
)
from .localsshd import established_to as established_to  # the tests' and bench's

DEFAULT_DIR = Path("~/.cache/sshdist/nodes").expanduser()


@dataclass
class LocalNode:
    """One sshd: its alias in ssh_config, its port and its process."""

    name: str
    port: int
    pid: int | None = None

    def is_running(self) -> bool:
        return self.pid is not None and _alive(self.pid) and _port_open(self.port)


class LocalNodes(SshdDir):
    """A set of local nodes described by ``nodes.json`` in one directory.

    ``name_format`` names node i (``"node{}"``: node1, node2...; a local cluster's compute
    nodes use ``"cn{:02d}"``); ``sshd_extra`` is appended to every node's sshd_config (it
    can add keywords, e.g. ``TrustedUserCAKeys``, not change those set above it: sshd keeps
    a keyword's first value).  Both are kept in ``nodes.json`` for ``grow`` and ``start``.
    """

    def __init__(self, directory: str | os.PathLike[str] = DEFAULT_DIR) -> None:
        super().__init__(directory)
        self.nodes: list[LocalNode] = []
        self.name_format = "node{}"
        self.sshd_extra = ""
        self._watcher: subprocess.Popen[bytes] | None = None
        state = self.dir / "nodes.json"
        if state.is_file():
            data = json.loads(state.read_text())
            self.user = data["user"]
            self.nodes = [LocalNode(**n) for n in data["nodes"]]
            self.name_format = data.get("name_format", self.name_format)
            self.sshd_extra = data.get("sshd_extra", self.sshd_extra)

    @property
    def names(self) -> list[str]:
        return [n.name for n in self.nodes]

    def session_options(self) -> dict[str, str]:
        """Keywords for ``make_session``/``make_node`` that reach these nodes."""
        return {"ssh_config": str(self.ssh_config)}

    # -- lifecycle --------------------------------------------------------------

    @classmethod
    def up(
        cls,
        count: int,
        directory: str | os.PathLike[str] = DEFAULT_DIR,
        *,
        name_format: str = "node{}",
        sshd_extra: str = "",
        persist: bool = False,
    ) -> LocalNodes:
        """Start ``count`` nodes (node1..nodeN) and write their ssh_config and known_hosts.

        They are stopped when this process exits, however it exits, unless ``persist``:
        then they run until ``down()``, from any process (``sshdist nodes down``)."""
        if count < 1:
            raise LocalNodesError("start at least one node")
        nodes = cls(directory)
        if any(n.is_running() for n in nodes.nodes):
            raise LocalNodesError(
                f"nodes are already running in {nodes.dir}: stop them first (sshdist nodes down)"
            )
        nodes.name_format = name_format
        nodes.sshd_extra = sshd_extra
        nodes._make_dir()
        nodes._watcher = ownerwatch.watch("nodes", nodes.dir, persist)
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation
        _keygen(nodes.identity, "sshdist local nodes client")
        shutil.copyfile(nodes.identity.with_suffix(".pub"), nodes.dir / "authorized_keys")
        nodes.nodes = [LocalNode(nodes._name(i), 0) for i in range(1, count + 1)]
        try:
            for node in nodes.nodes:
                _keygen(nodes.dir / node.name / "ssh_host_ed25519_key", f"sshdist {node.name}")
                nodes.start(node.name, fresh_port=True)
        except BaseException:
            nodes.down()
            raise
        nodes._write_client_files()
        return nodes

    def grow(self, count: int) -> list[str]:
        """Start more nodes, up to ``count`` in all (those running stay as they are), and
        rewrite ssh_config and known_hosts to name them; the names of all ``count``."""
        added = [LocalNode(self._name(i), 0) for i in range(len(self.nodes) + 1, count + 1)]
        self.nodes += added
        try:
            for node in added:
                _keygen(self.dir / node.name / "ssh_host_ed25519_key", f"sshdist {node.name}")
                self.start(node.name, fresh_port=True)
        except BaseException:
            for node in added:
                self.stop(node.name)
            self.nodes = self.nodes[: len(self.nodes) - len(added)]
            self._save()
            raise
        self._write_client_files()
        return self.names[:count]

    def _name(self, i: int) -> str:
        return self.name_format.format(i)

    def _node(self, name: str) -> LocalNode:
        for node in self.nodes:
            if node.name == name:
                return node
        raise LocalNodesError(f"no local node named {name!r} in {self.dir}")

    def _write_sshd_config(self, node: LocalNode) -> Path:
        home = self.dir / node.name
        config = home / "sshd_config"
        runtime = home / "run"
        runtime.mkdir(mode=0o700, exist_ok=True)
        config.write_text(
            f"Port {node.port}\n"
            "ListenAddress 127.0.0.1\n"
            f"HostKey {home / 'ssh_host_ed25519_key'}\n"
            f"PidFile {home / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {self.dir / 'authorized_keys'}\n"
            "PubkeyAuthentication yes\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "PermitRootLogin prohibit-password\n"
            "UsePAM no\n"
            "StrictModes no\n"
            "MaxSessions 64\n"
            "MaxStartups 64\n"
            "AllowStreamLocalForwarding yes\n"
            "AllowTcpForwarding yes\n"
            # The login user's interactive ~/.bashrc (pyenv init and the like) is not
            # the node's business: with SHLVL set, bash skips it for ssh commands, as
            # a server's .bashrc does for non-interactive shells.  Saves ~0.1 s a channel.
            # Local nodes stand in for separate hosts but share this machine's cores:
            # one GC marker thread each keeps their collectors from fighting over them
            # (two busy nodes on 2 cores: speedup 1.2-1.5 with Boehm's default, 1.7-2.0).
            # Each node keeps its REPL servers in a runtime directory of its own, as
            # separate hosts would: nodes (and test runs) never share a server.
            f"SetEnv SHLVL=1 GC_MARKERS=1 XDG_RUNTIME_DIR={runtime}\n"
            "LogLevel ERROR\n" + self.sshd_extra
        )
        return config

    def start(self, name: str, *, fresh_port: bool = False) -> LocalNode:
        """Start (or restart, on its old port) the sshd of node ``name``."""
        node = self._node(name)
        if node.pid and _alive(node.pid):
            return node
        last_error = ""
        for _attempt in range(5):
            if fresh_port or not node.port:
                node.port = _free_port()
            config = self._write_sshd_config(node)
            proc = _spawn(
                [_sshd(), "-D", "-e", "-f", str(config)], self.dir / node.name / "sshd.log"
            )
            node.pid = proc.pid
            self._save()  # before waiting: an owner killed meanwhile leaves no sshd unnamed
            if _wait_started(proc, node.port):
                return node
            last_error = (self.dir / node.name / "sshd.log").read_text(errors="replace")[-500:]
            if not fresh_port:
                break
        raise LocalNodesError(f"sshd for {name} did not start on port {node.port}: {last_error}")

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        """Stop one node's sshd and the connections it serves (to test failures, pass SIGKILL)."""
        node = self._node(name)
        if node.pid:
            _stop_tree(node.pid, sig)
        node.pid = None
        self._save()

    def down(self) -> None:
        """Stop every node (and the watcher that would have stopped them at exit)."""
        for node in self.nodes:
            self.stop(node.name)
        self._stop_unnamed_sshds()
        ownerwatch.stop(self._watcher)
        self._watcher = None

    def status(self) -> list[dict[str, object]]:
        return [
            {"name": n.name, "port": n.port, "pid": n.pid, "running": n.is_running()}
            for n in self.nodes
        ]

    # -- files ------------------------------------------------------------------

    def _save(self) -> None:
        data = {
            "user": self.user,
            "nodes": [asdict(n) for n in self.nodes],
            "name_format": self.name_format,
            "sshd_extra": self.sshd_extra,
        }
        (self.dir / "nodes.json").write_text(json.dumps(data, indent=1))

    def _write_client_files(self) -> None:
        blocks = [self._host(node.name, node.port) for node in self.nodes]
        hosts = [_known_host(node.port, self.dir / node.name) for node in self.nodes]
        self.ssh_config.write_text("\n".join(blocks))
        self.known_hosts.write_text("".join(hosts))

    def config_through(
        self, relay_ports: Mapping[int, int], directory: str | os.PathLike[str]
    ) -> Path:
        """An ssh_config in ``directory`` naming the nodes as ours does, each reached at
        the port ``relay_ports`` maps its own port to (a ``DelayRelay``'s), and a
        known_hosts beside it that holds each node's host key for that port: through a
        relay, host keys are checked as strictly as ever.  Returns the ssh_config."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        known = folder / "known_hosts"
        relayed = [n for n in self.nodes if n.port in relay_ports]
        blocks = [self._host(n.name, relay_ports[n.port], known_hosts=known) for n in relayed]
        hosts = [_known_host(relay_ports[n.port], self.dir / n.name) for n in relayed]
        config = folder / "ssh_config"
        config.write_text("\n".join(blocks))
        known.write_text("".join(hosts))
        return config

    def describe(self) -> str:
        """How to use these nodes, as ``sshdist nodes up`` prints it."""
        lines = [f"{len(self.nodes)} local node(s) in {self.dir}:"]
        for s in self.status():
            state = "running" if s["running"] else "stopped"
            lines.append(f"  {s['name']:8} 127.0.0.1:{s['port']:<6} {state}")
        first = self.nodes[0].name if self.nodes else self._name(1)
        lines += [
            f"ssh_config: {self.ssh_config}",
            f"try:   ssh -F {self.ssh_config} {first}",
            f"Python: make_node('{first}', ssh_config='{self.ssh_config}')",
        ]
        return "\n".join(lines)
