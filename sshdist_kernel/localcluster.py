"""A local stand-in for an HPC cluster: a login node with two-factor authentication and
compute nodes cn01..cnNN that only the login node can reach, all sshds on 127.0.0.1.

``LocalCluster.up(directory, compute=4, auth="publickey+totp")`` starts:

* the **login node**: an sshd at OpenSSH's default limits (``MaxStartups 10:30:100``,
  ``MaxSessions 10``: nothing raises them), ``AllowTcpForwarding yes``,
  ``PermitRootLogin yes``, ``UsePAM yes`` and the authentication chosen by ``auth``
  (``"publickey+totp"``, ``"totp"``, ``"password"``, ``"publickey"``): its PAM stack,
  TOTP codes and password are ``clusterlogin``'s.

* **compute nodes** cn01..cnNN: ``LocalNodes`` (``name_format="cn{:02d}"``) in
  ``<directory>/compute``, publickey only, their own host keys, and reachable from the
  login node only: ``clusterfilter`` puts the login sshd in a cgroup of its own and
  lets only that cgroup's sockets reach the compute ports.  So the cluster's
  ``status()`` sees a compute sshd as running when its process lives and its port
  listens, not by connecting (``LocalNodes.status()`` of ``cluster.compute`` would say
  "stopped").

* a **user CA**: ``issue_certificate(pubkey)`` signs a key; the login node and the
  compute nodes trust it (``TrustedUserCAKeys``; the principal must be the login user).

* client files: ``ssh_config`` (``Host login``; ``Host cn01``.. with each node's port and
  HostName 127.0.0.1, as the login node sees them; ``Host cn*`` with ``ProxyJump login``)
  and ``known_hosts`` with every host key.

``up()`` writes ``/etc/pam.d/sshdist-login-<id>``, a cgroup and an nftables table
(``<id>``: 8 random hex digits, one per cluster, so two clusters may run at once);
``down()`` removes them.  The cluster ends with the process that started it
(``ownerwatch``) unless started with ``persist=True``, as ``sshdist cluster up`` does;
``up()`` and ``down()`` also remove the tables and cgroups of clusters that are gone
without theirs (``clusterfilter.sweep``).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from . import clusterfilter, clusterlogin, clustertool, ownerwatch
from .clusterlogin import AUTH_MODES, TOTP_STEP
from .clustertool import LocalClusterError
from .localnodes import LocalNodes
from .localsshd import (
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

__all__ = ["AUTH_MODES", "DEFAULT_DIR", "TOTP_STEP", "LocalCluster", "LocalClusterError"]

DEFAULT_DIR = Path("~/.cache/sshdist/cluster").expanduser()


class LocalCluster(SshdDir):
    """A local cluster described by ``cluster.json`` in one directory (see the module).

    ``ssh_config`` names ``login`` and ``cn01``.. (through ``ProxyJump login``); the
    login node and the compute nodes accept the client's key, ``identity``.
    """

    def __init__(self, directory: str | os.PathLike[str] = DEFAULT_DIR) -> None:
        super().__init__(directory)
        self.auth = "publickey+totp"
        self.id = ""
        self.login_port = 0
        self.login_pid: int | None = None
        self.totp_window = 60
        self._last_step = -1
        self._watcher: subprocess.Popen[bytes] | None = None
        state = self.dir / "cluster.json"
        if state.is_file():
            data = json.loads(state.read_text())
            self.user = data["user"]
            self.auth = data["auth"]
            self.id = data["id"]
            self.login_port = data["login_port"]
            self.login_pid = data["login_pid"]
            self.totp_window = data["totp_window"]
        self.compute = LocalNodes(self.compute_dir)

    # -- paths and names ----------------------------------------------------------

    @property
    def login_host(self) -> str:
        """The login node's alias in ``ssh_config``."""
        return "login"

    @property
    def compute_names(self) -> list[str]:
        return self.compute.names

    @property
    def compute_ports(self) -> dict[str, int]:
        return {n.name: n.port for n in self.compute.nodes}

    @property
    def compute_dir(self) -> Path:
        """The compute nodes' ``LocalNodes`` directory; its own ``ssh_config`` there
        reaches them directly, which the cluster's filter refuses (tests use it)."""
        return self.dir / "compute"

    @property
    def login_dir(self) -> Path:
        return self.dir / "login"

    @property
    def login_sshd_config(self) -> Path:
        return self.login_dir / "sshd_config"

    @property
    def ca_key(self) -> Path:
        """The user CA's private key; ``ca_key.with_suffix('.pub')`` is what sshd trusts."""
        return self.dir / "user_ca"

    @property
    def pam_service(self) -> str:
        """The login sshd's program name, hence its PAM service."""
        return clusterlogin.pam_service(self.id)

    @property
    def pam_file(self) -> Path:
        return clusterlogin.PAM_DIR / self.pam_service

    @property
    def nft_table(self) -> str:
        """The nftables table (family inet) that keeps the compute ports to the login node."""
        return clusterfilter.filter_name(self.id)

    @property
    def cgroup(self) -> Path:
        """The login node's cgroup v2 directory."""
        return clusterfilter.cgroup2_mount() / clusterfilter.filter_name(self.id)

    @property
    def password(self) -> str | None:
        """The login password (``auth="password"``), else None."""
        path = self.login_dir / clusterlogin.PASSWORD_FILE
        return path.read_text().strip() if self.auth == "password" and path.is_file() else None

    @property
    def totp_secret(self) -> str | None:
        """The TOTP secret, hex (``oathtool --totp SECRET``), or None without TOTP."""
        path = self.dir / "totp_secret"
        return path.read_text().strip() if "totp" in self.auth and path.is_file() else None

    # -- lifecycle ----------------------------------------------------------------

    @classmethod
    def up(
        cls,
        directory: str | os.PathLike[str] = DEFAULT_DIR,
        compute: int = 4,
        *,
        auth: str = "publickey+totp",
        totp_window: int = 60,
        persist: bool = False,
    ) -> LocalCluster:
        """Start the login node and ``compute`` compute nodes; write the client files.

        All of it is stopped and removed when this process exits, however it exits,
        unless ``persist``: then it runs until ``down()`` (``sshdist cluster down``)."""
        if auth not in AUTH_MODES:
            raise LocalClusterError(f"auth must be one of {', '.join(AUTH_MODES)}, not {auth!r}")
        if compute < 1:
            raise LocalClusterError("start at least one compute node")
        if os.geteuid() != 0:
            raise LocalClusterError(
                "a local cluster needs root: it writes /etc/pam.d, a cgroup and nftables rules"
            )
        cluster = cls(directory)
        if cluster.is_running():
            raise LocalClusterError(
                f"a cluster is already running in {cluster.dir}: stop it first "
                "(sshdist cluster down)"
            )
        if any(c.isspace() for c in str(cluster.dir)):
            raise LocalClusterError(f"PAM module arguments cannot hold spaces: {cluster.dir}")
        clustertool.check_installed(pam_oath="totp" in auth)
        cluster.auth = auth
        cluster.totp_window = totp_window
        cluster.id = secrets.token_hex(4)
        cluster.login_pid = None
        cluster.login_port = 0
        cluster._last_step = -1
        cluster._make_dir()
        cluster.login_dir.mkdir(mode=0o700, exist_ok=True)
        cluster.compute_dir.mkdir(mode=0o700, exist_ok=True)
        cluster._save()
        cls.sweep()
        cluster._watcher = ownerwatch.watch("cluster", cluster.dir, persist)
        try:
            cluster._start(compute)
        except BaseException:
            cluster.down()
            raise
        return cluster

    def _start(self, compute: int) -> None:
        _keygen(self.identity, "sshdist local cluster client")
        _keygen(self.ca_key, "sshdist local cluster user CA")
        _keygen(self.login_dir / "ssh_host_ed25519_key", "sshdist login")
        shutil.copyfile(self.identity.with_suffix(".pub"), self.dir / "authorized_keys")
        # One client key for the whole cluster: the compute nodes' LocalNodes finds it in
        # its own directory (and authorizes it) through these links.
        for name in ("id_ed25519", "id_ed25519.pub"):
            link = self.compute_dir / name
            if not link.is_symlink():
                link.unlink(missing_ok=True)
                link.symlink_to(self.dir / name)
        ca_pub = self.ca_key.with_suffix(".pub")
        self.compute = LocalNodes.up(
            compute,
            self.compute_dir,
            name_format="cn{:02d}",
            sshd_extra=f"TrustedUserCAKeys {ca_pub}\n",
            persist=True,  # the cluster's own down() (or its watcher's) stops them
        )
        clusterfilter.make_cgroup(self.cgroup)
        clusterfilter.filter_ports(self.nft_table, self.cgroup, self.compute_ports.values())
        secret = self.dir / "totp_secret"
        clusterlogin.write_auth_files(
            self.auth, self.login_dir, secret, self.user, self.pam_file, self.totp_window
        )
        self._start_login()
        self._write_client_files()
        self._save()

    def is_running(self) -> bool:
        """The login sshd runs (the compute nodes' state is in ``status()``)."""
        return self.login_pid is not None and _alive(self.login_pid)

    def down(self) -> None:
        """Stop every sshd and remove the nft table, the cgroup and the PAM file."""
        if self.login_pid:
            _stop_tree(self.login_pid)
        self.login_pid = None
        self.compute.down()
        self._stop_unnamed_sshds()
        if self.id:
            try:
                cgroup: Path | None = self.cgroup
            except LocalClusterError:  # no cgroup v2 mounted: none was made
                cgroup = None
            clusterfilter.remove_filter(self.nft_table, cgroup)
            self.pam_file.unlink(missing_ok=True)
        self.sweep()
        ownerwatch.stop(self._watcher)
        self._watcher = None
        if self.dir.is_dir():
            self._save()

    @staticmethod
    def sweep() -> None:
        """Remove what clusters gone without a ``down()`` left: their firewall tables
        and cgroups (``clusterfilter.sweep``) and PAM files."""
        kept = clusterfilter.sweep()
        clusterlogin.remove_pam_files_but(kept, older_than=clusterfilter.STARTING)

    def status(self) -> dict[str, object]:
        login = {
            "name": self.login_host,
            "port": self.login_port,
            "pid": self.login_pid,
            "running": self.is_running() and _port_open(self.login_port),
        }
        compute = [
            {
                "name": n.name,
                "port": n.port,
                "pid": n.pid,
                "running": n.pid is not None and _alive(n.pid) and clusterfilter.listening(n.port),
            }
            for n in self.compute.nodes
        ]
        return {"auth": self.auth, "login": login, "compute": compute}

    # -- TOTP and certificates ----------------------------------------------------

    def totp_code(self) -> str:
        """A TOTP code the login node accepts, never handed out before by this object:
        the current step's, then the next steps' (within the window), see clusterlogin."""
        now = int(time.time()) // TOTP_STEP
        step = max(self._last_step + 1, now)
        if step > now + self.totp_window:
            self.reset_totp()
            step = now
        self._last_step = step
        secret = self.totp_secret
        if secret is None:
            raise LocalClusterError(f"auth={self.auth!r}: this cluster asks for no TOTP code")
        return clusterlogin.totp_code_at(secret, step)

    def reset_totp(self) -> None:
        """Make pam_oath forget the codes used so far (rewrite the users file fresh)."""
        clusterlogin.write_users_file(self.login_dir, self.user, str(self.totp_secret))
        self._last_step = -1

    def issue_certificate(
        self,
        pubkey: str | os.PathLike[str],
        principals: Sequence[str] | None = None,
        *,
        certificate: str | os.PathLike[str] | None = None,
        validity: str = "-5m:+1d",
    ) -> Path:
        """Sign ``pubkey`` with the cluster's user CA for ``principals`` (default: the
        login user); write ``<key>-cert.pub`` beside it, or ``certificate`` if given.
        Returns the certificate's path."""
        return clusterlogin.sign_key(
            self.ca_key, Path(pubkey), principals or [self.user], certificate, validity, self.dir
        )

    # -- pieces of up() -----------------------------------------------------------

    def _write_login_config(self) -> Path:
        config = clusterlogin.login_sshd_config(
            self.auth, self.login_port, self.login_dir, self.dir / "authorized_keys", self.ca_key
        )
        self.login_sshd_config.write_text(config)
        return self.login_sshd_config

    def _start_login(self) -> None:
        program = self.login_dir / self.pam_service  # sshd's __progname: the PAM service
        program.unlink(missing_ok=True)
        program.symlink_to(_sshd())
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation
        log_path = self.login_dir / "sshd.log"
        last_error = ""
        for _attempt in range(5):
            self.login_port = _free_port()
            config = self._write_login_config()
            proc = _spawn([str(program), "-D", "-e", "-f", str(config)], log_path)
            self.login_pid = proc.pid
            # Into the login node's cgroup before it accepts anyone: every connection's
            # sshd, forked from this one, is then allowed to reach the compute nodes.
            (self.cgroup / "cgroup.procs").write_text(f"{proc.pid}\n")
            self._save()
            if _wait_started(proc, self.login_port):
                return
            self.login_pid = None
            last_error = log_path.read_text(errors="replace")[-500:]
        raise LocalClusterError(f"the login sshd did not start: {last_error}")

    # -- files --------------------------------------------------------------------

    def _save(self) -> None:
        data = {
            "user": self.user,
            "auth": self.auth,
            "id": self.id,
            "login_port": self.login_port,
            "login_pid": self.login_pid,
            "totp_window": self.totp_window,
        }
        (self.dir / "cluster.json").write_text(json.dumps(data, indent=1))

    def _write_client_files(self) -> None:
        blocks = [self._host(self.login_host, self.login_port)]
        hosts = [_known_host(self.login_port, self.login_dir)]
        for node in self.compute.nodes:
            # The compute HostName as the login node sees it: its sshd connects there.
            blocks.append(self._host(node.name, node.port, client=False))
            hosts.append(_known_host(node.port, self.compute_dir / node.name))
        blocks.append(f"Host cn*\n    ProxyJump {self.login_host}\n" + self._client())
        self.ssh_config.write_text("\n".join(blocks))
        self.known_hosts.write_text("".join(hosts))

    def describe(self) -> str:
        """How to use the cluster, as ``sshdist cluster up`` prints it."""
        state = self.status()
        login = state["login"]
        lines = [f"local cluster in {self.dir} (auth {self.auth}):"]
        for node in [login, *state["compute"]]:
            running = "running" if node["running"] else "stopped"
            lines.append(f"  {node['name']:8} 127.0.0.1:{node['port']:<6} {running}")
        first = self.compute_names[0] if self.compute_names else "cn01"
        lines += [
            f"ssh_config: {self.ssh_config}",
            f"try:   ssh -F {self.ssh_config} {first}   (through the login node)",
        ]
        if self.totp_secret:
            lines.append(f"TOTP secret (hex): {self.totp_secret}")
            lines.append(f"code:  oathtool --totp {self.totp_secret}")
        if self.password:
            lines.append(f"password: {self.password}")
        return "\n".join(lines)
