"""Keeps the local cluster's compute ports to its login node: a cgroup v2 for the login
sshd and an nftables table that lets only that cgroup's sockets reach them.

The mechanism, measured on Debian 12 (kernel 6.x, nftables 1.0.6): the login sshd is
moved into a cgroup v2 of its own, ``sshdist-cluster-<id>``; every process it forks (the
per-connection sshds that open ``direct-tcpip`` channels for ``ProxyJump``, and the
shells of its sessions) inherits it, and sockets carry the cgroup of the process that
made them.  An nftables table of the cluster's own, ``inet sshdist-cluster-<id>``, has
an output chain that accepts TCP to the compute ports on 127.0.0.0/8 from sockets in
that cgroup (``socket cgroupv2 level L "..."``) and rejects every other with a TCP
reset, so a direct ``ssh`` to a compute node fails at once ("Connection refused")
instead of hanging.  Loopback traffic crosses the output hook with the connecting socket
attached, which is what the match needs.  The alternatives do not work here: everything
runs as root, so ``meta skuid`` cannot tell the login node from the client; the login
sshd connects from 127.0.0.1 like any client, so separate loopback addresses with
``Match Address`` cannot either; a network namespace for the compute nodes would still
be reachable from the root namespace that holds both the client and the login node.

``down()`` deletes the table, kills what is left in the cgroup and removes it.  A table
names the process that made it in its comment; ``sweep()`` removes the tables (and
cgroups) of clusters gone without a ``down()``: no process left in the cgroup and the
maker gone.  A consequence of the filter: a compute port probed from outside the cgroup
is refused, so the cluster sees a compute sshd as running when its port is in LISTEN
state (``listening()``), not by connecting.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

from .clustertool import LocalClusterError, made_before, run
from .ownerwatch import process_start

CGROUP_ROOT = Path("/sys/fs/cgroup")  # nft names a cgroup v2 by its path below this
STARTING = 60  # seconds: a cluster's up() makes its cgroup, table and PAM file within this


def filter_name(cluster_id: str) -> str:
    """The name of the cluster's cgroup and of its nftables table (family inet)."""
    return f"sshdist-cluster-{cluster_id}"


def cgroup2_mount() -> Path:
    """Where the cgroup v2 hierarchy is mounted: /sys/fs/cgroup (unified) or
    /sys/fs/cgroup/unified (systemd's hybrid layout, as on this project's test machine)."""
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[2] == "cgroup2":
            return Path(fields[1])
    raise LocalClusterError(
        "no cgroup v2 hierarchy is mounted: the compute nodes' filter needs one"
    )


def listening(port: int) -> bool:
    """A socket listens on 127.0.0.1:port (read from /proc, not by connecting: the
    compute ports refuse connections from outside the login node)."""
    want = f"0100007F:{port:04X}"
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return False
    return any(f[1] == want and f[3] == "0A" for f in (line.split() for line in lines))


def make_cgroup(cgroup: Path) -> None:
    mount = cgroup2_mount()
    try:
        mount.relative_to(CGROUP_ROOT)
    except ValueError:
        raise LocalClusterError(
            f"cgroup v2 is mounted at {mount}, outside {CGROUP_ROOT} where nft looks"
        ) from None
    try:
        cgroup.mkdir(exist_ok=True)
    except OSError as exc:
        raise LocalClusterError(f"cannot make the login node's cgroup: {exc}") from None


def filter_ports(table: str, cgroup: Path, ports: Iterable[int]) -> None:
    """Add table ``table``: ``ports`` on 127.0.0.0/8 for ``cgroup``'s sockets alone."""
    listed = ", ".join(str(port) for port in ports)
    level = len(cgroup.relative_to(cgroup2_mount()).parts)
    pid = os.getpid()
    rules = (
        f"table inet {table} {{\n"
        f'  comment "made by pid {pid} started {process_start(pid)}"\n'
        "  chain output {\n"
        "    type filter hook output priority filter; policy accept;\n"
        f"    ip daddr 127.0.0.0/8 tcp dport {{ {listed} }} "
        f'socket cgroupv2 level {level} "{cgroup.relative_to(CGROUP_ROOT)}" accept\n'
        f"    ip daddr 127.0.0.0/8 tcp dport {{ {listed} }} reject with tcp reset\n"
        "  }\n"
        "}\n"
    )
    run(["nft", "-f", "-"], "nft could not add the compute nodes' filter", stdin=rules)


def remove_filter(table: str, cgroup: Path | None) -> None:
    """Delete the table; kill what is left in the cgroup and remove it (None: no cgroup
    v2 is mounted)."""
    if cgroup is not None:
        _remove_cgroup(cgroup)
    subprocess.run(
        ["nft", "delete", "table", "inet", table],
        capture_output=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


def sweep() -> set[str] | None:
    """Remove the filters of clusters that are gone: their cgroup holds no process (no
    login node) and the process that made the table has exited (it is not one being
    started).  A killed run leaves such tables, which reset connections to ports that
    other programs come to use.  Empty cgroups without a table, made over ``STARTING``
    seconds ago, go too.  Returns the ids of the clusters whose tables remain: None,
    having removed nothing, if nft could not list them (nft missing, not root)."""
    tables = _tables()
    if tables is None:
        return None
    try:
        mount: Path | None = cgroup2_mount()
    except LocalClusterError:
        mount = None
    kept = set()
    for table in tables:
        cgroup = mount / table if mount else None
        listed = _nft("list", "table", "inet", table)
        maker = _maker(listed or "")
        if (
            listed is None
            or (cgroup is not None and _holds_processes(cgroup))
            or (maker is not None and process_start(maker[0]) == maker[1])
        ):
            kept.add(table.removeprefix(filter_name("")))
        else:
            remove_filter(table, cgroup)
    for cgroup in mount.glob(filter_name("*")) if mount else ():
        if (
            cgroup.name.removeprefix(filter_name("")) not in kept
            and made_before(cgroup, STARTING)
            and not _holds_processes(cgroup)
        ):
            try:
                cgroup.rmdir()
            except OSError:
                pass  # in use after all
    return kept


def _nft(*args: str) -> str | None:
    """What ``nft args`` prints (None if it fails: not root, nft missing, a table gone)."""
    try:
        done = subprocess.run(
            ["nft", *args], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def _tables() -> list[str] | None:
    """The clusters' tables (None if nft cannot list the tables)."""
    listed = _nft("list", "tables")
    if listed is None:
        return None
    prefix = filter_name("")
    names = (line.split() for line in listed.splitlines())
    return [f[2] for f in names if len(f) == 3 and f[1] == "inet" and f[2].startswith(prefix)]


def _maker(listed: str) -> tuple[int, int] | None:
    """The pid and start time in the comment of a table ``listed`` by nft (None: an
    older table has none)."""
    match = re.search(r'comment "made by pid (\d+) started (\d+)"', listed)
    return (int(match[1]), int(match[2])) if match else None


def _holds_processes(cgroup: Path) -> bool:
    try:
        return bool((cgroup / "cgroup.procs").read_text().split())
    except OSError:
        return False


def _remove_cgroup(cgroup: Path) -> None:
    if not cgroup.is_dir():
        return
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            procs = (cgroup / "cgroup.procs").read_text().split()
            if not procs:
                break
            if (cgroup / "cgroup.kill").exists():
                (cgroup / "cgroup.kill").write_text("1\n")
            else:
                for pid in procs:
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ENODEV):
                raise
            break  # removed meanwhile: two sweeps (or a sweep and the cluster's down())
        time.sleep(0.02)
    for _ in range(100):
        try:
            cgroup.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:  # EBUSY while the last killed processes exit
            time.sleep(0.05)
    raise LocalClusterError(f"could not remove the cgroup {cgroup}")
