"""Local nodes and local clusters end with the process that started them, however it
ends (``ownerwatch``); a cluster's leftovers from before (firewall tables, cgroups, PAM
files) are swept; ``persist=True`` (the ``sshdist`` command) keeps them running."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest

from sshdist_kernel import clusterfilter, clusterlogin
from sshdist_kernel.localnodes import LocalNodes
from sshdist_kernel.localsshd import _alive, _port_open

from .conftest import start_kernel, wait_until

CLEANED_WITHIN = 20  # seconds: the watcher starts sshdist's CLI (~0.3 s), which stops them

NEEDS_CLUSTER = pytest.mark.skipif(
    os.geteuid() != 0 or not (shutil.which("nft") and shutil.which("oathtool")),
    reason="a local cluster needs root, nft and oathtool (make test installs them)",
)


def gone(pid: int) -> bool:
    return not _alive(pid)  # a zombie whose parent (the killed owner) is gone counts


@pytest.fixture
def owner() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test starts to own nodes; killed at the end if the test did not."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        proc.kill()
        proc.wait(10)


def start_owner(owner: list[subprocess.Popen[str]], script: str) -> dict:
    """Run ``script`` in a Python that prints one JSON line (what it started), then waits
    for its stdin to close; that line."""
    proc = subprocess.Popen(
        [sys.executable, "-c", script + "\nimport sys; sys.stdin.read()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    owner.append(proc)
    line = proc.stdout.readline()  # type: ignore[union-attr]
    assert line, f"the owner ended before it said what it started (exit {proc.wait(10)})"
    return json.loads(line)


def test_local_nodes_end_with_the_process_that_started_them(owner, tmp_path: Path) -> None:
    where = tmp_path / "nodes"
    made = start_owner(
        owner,
        "import json\nfrom sshdist_kernel.localnodes import LocalNodes\n"
        f"n = LocalNodes.up(2, {str(where)!r})\nn.stop('node1')\nn.start('node1')\nn.grow(3)\n"
        "print(json.dumps([[x.pid, x.port] for x in n.nodes]), flush=True)",
    )
    assert len(made) == 3 and all(_port_open(port) for _, port in made)
    os.kill(owner[0].pid, signal.SIGKILL)  # nothing of the owner's runs after this
    owner[0].wait(10)
    log = where / "ownerwatch.log"
    wait_until(
        lambda: "stopped 3 local node(s)" in log.read_text(),
        CLEANED_WITHIN,
        "the nodes of a killed owner to stop",
    )
    assert all(gone(pid) and not _port_open(port) for pid, port in made)
    assert [n.pid for n in LocalNodes(where).nodes] == [None, None, None]
    assert "owner gone: stopping the nodes" in log.read_text()


@pytest.mark.parametrize("ending", ["exits", "is killed"])
def test_nodes_whose_directory_was_removed_still_end_with_their_owner(owner, ending: str) -> None:
    """A script that starts nodes in a ``TemporaryDirectory`` and leaves without
    ``down()``: the directory is gone (its state with it) before the watcher looks, and
    the sshds, found by their command line, stop all the same."""
    script = (
        "import json, os, signal, sys, tempfile\nfrom sshdist_kernel.localnodes import LocalNodes\n"
        "with tempfile.TemporaryDirectory() as where:\n"
        "    n = LocalNodes.up(2, where)\n"
        "    made = [[x.pid, x.port] for x in n.nodes]\n"
        "print(json.dumps(made), flush=True)\n"
        f"if {ending == 'is killed'}: os.kill(os.getpid(), signal.SIGKILL)\n"
        "sys.exit(0)\n"
    )
    made = start_owner(owner, script)
    owner[0].wait(10)
    wait_until(
        lambda: all(gone(pid) and not _port_open(port) for pid, port in made),
        CLEANED_WITHIN,
        "the sshds of a removed directory to stop",
    )


def test_an_owner_killed_while_an_sshd_starts_leaves_none(owner, tmp_path: Path) -> None:
    where = tmp_path / "nodes"
    script = """
import json, threading
from sshdist_kernel import localnodes
real, started = localnodes._wait_started, []
def starting(proc, port):  # the owner is killed while node2's sshd starts
    started.append(port)
    if len(started) == 2:
        print(json.dumps([started[0], port, proc.pid]), flush=True)
        threading.Event().wait()
    return real(proc, port)
localnodes._wait_started = starting
"""
    made = start_owner(owner, script + f"localnodes.LocalNodes.up(2, {str(where)!r})")
    first_port, port, pid = made
    wait_until(lambda: _port_open(port), 10, "node2's sshd to listen")
    os.kill(owner[0].pid, signal.SIGKILL)
    owner[0].wait(10)
    log = where / "ownerwatch.log"
    wait_until(lambda: "stopped 2 local node(s)" in log.read_text(), CLEANED_WITHIN, "down")
    assert gone(pid) and not _port_open(port) and not _port_open(first_port)


def test_an_owner_killed_before_its_watcher_looked_is_seen_gone(owner, tmp_path: Path) -> None:
    """Killed as soon as it started its watcher, before that process asked for its
    parent: the watcher, reparented to init by then, still sees its owner gone (it was
    told the owner's pid; it waited on init's forever)."""
    where = tmp_path / "nodes"
    where.mkdir()
    script = (
        "import json, os, signal\nfrom pathlib import Path\n"
        "from sshdist_kernel import ownerwatch\n"
        f"watcher = ownerwatch.start('nodes', Path({str(where)!r}))\n"
        "print(json.dumps(watcher.pid), flush=True)\nos.kill(os.getpid(), signal.SIGKILL)"
    )
    watcher = start_owner(owner, script)
    owner[0].wait(10)
    try:
        wait_until(lambda: gone(watcher), CLEANED_WITHIN, "the watcher to see its owner gone")
        assert "stopped 0 local node(s)" in (where / "ownerwatch.log").read_text()
    finally:
        if not gone(watcher):
            os.kill(watcher, signal.SIGKILL)


def test_the_watcher_finds_sshdist_where_its_owner_did(owner, tmp_path: Path) -> None:
    """An owner that imports sshdist_kernel from a folder on its sys.path alone (a
    checkout, pytest's rootdir), not installed: its watcher's ``down`` finds it too."""
    venv = tmp_path / "venv"  # a Python with this one's packages but not sshdist_kernel
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    lib = [sysconfig.get_paths()["purelib"]]
    paths = subprocess.run(
        [
            venv / "bin" / "python",
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    Path(paths.stdout.strip(), "deps.pth").write_text("\n".join(lib) + "\n")
    here = Path(__file__).resolve().parent.parent
    where = tmp_path / "nodes"
    proc = subprocess.Popen(
        [
            venv / "bin" / "python",
            "-c",
            f"import sys; sys.path.insert(0, {str(here)!r})\n"
            "from sshdist_kernel.localnodes import LocalNodes\n"
            f"n = LocalNodes.up(1, {str(where)!r})\n"
            "print(n.nodes[0].pid, n.nodes[0].port, flush=True)\nsys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    owner.append(proc)
    pid, port = map(int, proc.stdout.readline().split())  # type: ignore[union-attr]
    proc.kill()
    proc.wait(10)
    log = where / "ownerwatch.log"
    try:
        wait_until(lambda: "stopped 1 local node" in log.read_text(), CLEANED_WITHIN, "down")
        assert gone(pid) and not _port_open(port)
    finally:
        if not gone(pid):
            os.kill(pid, signal.SIGTERM)


def test_a_watcher_leaves_nodes_started_since_by_another(owner, tmp_path: Path) -> None:
    """Its owner's nodes taken down by another object (``sshdist nodes down``), the
    watcher waits on; the directory's nodes started again meanwhile by another process
    (``sshdist nodes up``: to outlive it) are not the owner's to stop when it exits."""
    where = tmp_path / "nodes"
    start_owner(
        owner,
        "import json\nfrom sshdist_kernel.localnodes import LocalNodes\n"
        f"LocalNodes.up(1, {str(where)!r})\nLocalNodes({str(where)!r}).down()\n"
        "print(json.dumps('down'), flush=True)",
    )
    nodes = LocalNodes.up(1, where, persist=True)
    try:
        owner[0].stdin.close()  # type: ignore[union-attr]
        owner[0].wait(10)
        log = where / "ownerwatch.log"
        wait_until(
            lambda: any(said in log.read_text() for said in ("its own now", "stopped 1")),
            CLEANED_WITHIN,
            "the watcher to see its owner gone",
        )
        assert "stopped" not in log.read_text(), log.read_text()
        assert nodes.nodes[0].is_running()
    finally:
        nodes.down()


def test_down_also_ends_the_watcher(tmp_path: Path) -> None:
    nodes = LocalNodes.up(1, tmp_path / "nodes")
    watcher = nodes._watcher
    assert watcher is not None and watcher.poll() is None
    nodes.down()
    assert watcher.poll() is not None  # not left waiting for this process to exit
    assert "owner gone" not in (tmp_path / "nodes" / "ownerwatch.log").read_text()


def test_persistent_nodes_have_no_watcher(tmp_path: Path) -> None:
    nodes = LocalNodes.up(1, tmp_path / "nodes", persist=True)
    try:
        assert nodes._watcher is None and not (tmp_path / "nodes" / "ownerwatch.log").exists()
    finally:
        nodes.down()


def test_a_killed_kernels_local_nodes_stop(tmp_path: Path) -> None:
    """``%nodes --local`` in a Jupyter kernel that is then killed (a hard restart, an
    out-of-memory kill): its sshds do not outlive it."""
    km, kc = start_kernel("python3")
    try:
        printed: list[str] = []
        reply = kc.execute_interactive(
            "%load_ext sshdist_magics\n%nodes -o nodes --local 2\n"
            "print('started', *(f'{n.pid}:{n.port}' for n in nodes.local.nodes))",
            timeout=60,
            output_hook=lambda msg: (
                msg["msg_type"] == "stream" and printed.append(msg["content"]["text"])
            ),
        )
        assert reply["content"]["status"] == "ok", reply["content"]
        [line] = [ln for ln in "".join(printed).splitlines() if ln.startswith("started ")]
        made = [tuple(map(int, each.split(":"))) for each in line.split()[1:]]
        assert len(made) == 2 and all(_port_open(port) for _, port in made)
        km.signal_kernel(signal.SIGKILL)
        wait_until(
            lambda: all(gone(pid) and not _port_open(port) for pid, port in made),
            CLEANED_WITHIN,
            "the killed kernel's local nodes to stop",
        )
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


# -- local clusters ------------------------------------------------------------------------


def cluster_leftovers(cluster_id: str) -> list[str]:
    """What of cluster ``cluster_id`` is still on this machine: its table, cgroup and
    PAM file."""
    table = clusterfilter.filter_name(cluster_id)
    left = [table] if table in clusterfilter._tables() else []
    if (clusterfilter.cgroup2_mount() / table).exists():
        left.append("cgroup")
    if (clusterlogin.PAM_DIR / clusterlogin.pam_service(cluster_id)).exists():
        left.append("PAM file")
    return left


@NEEDS_CLUSTER
def test_a_local_cluster_ends_with_the_process_that_started_it(owner, tmp_path: Path) -> None:
    made = start_owner(
        owner,
        "import json\nfrom sshdist_kernel.localcluster import LocalCluster\n"
        f"c = LocalCluster.up({str(tmp_path / 'cluster')!r}, compute=2, auth='publickey')\n"
        "print(json.dumps({'id': c.id, 'pids': [c.login_pid, *(n.pid for n in "
        "c.compute.nodes)], 'ports': [c.login_port, *c.compute_ports.values()]}), flush=True)",
    )
    assert cluster_leftovers(made["id"]) == [
        clusterfilter.filter_name(made["id"]),
        "cgroup",
        "PAM file",
    ]
    os.kill(owner[0].pid, signal.SIGKILL)
    owner[0].wait(10)
    wait_until(
        lambda: all(gone(pid) for pid in made["pids"]) and not cluster_leftovers(made["id"]),
        CLEANED_WITHIN,
        "the killed owner's cluster to be taken down",
    )
    assert not any(clusterfilter.listening(port) for port in made["ports"])


@NEEDS_CLUSTER
def test_a_gone_clusters_table_cgroup_and_pam_file_are_swept(tmp_path: Path) -> None:
    """A table whose maker has exited and whose cgroup holds nobody is a killed run's
    leftover: it resets connections to its ports for whoever comes to use them.  The
    next cluster's up() (here: ``sweep``) removes it, and keeps a table whose maker
    still runs (a cluster being started)."""
    from sshdist_kernel.localcluster import LocalCluster

    mount = clusterfilter.cgroup2_mount()
    gone_id, starting_id = "0dead0ff", "0start00"
    make = (
        "from pathlib import Path\nfrom sshdist_kernel import clusterfilter\n"
        f"cgroup = Path({str(mount)!r}) / clusterfilter.filter_name({gone_id!r})\n"
        "clusterfilter.make_cgroup(cgroup)\n"
        "clusterfilter.filter_ports(cgroup.name, cgroup, [1])\n"
    )
    subprocess.run([sys.executable, "-c", make], check=True, timeout=60)  # its maker exits
    pam = clusterlogin.PAM_DIR / clusterlogin.pam_service(gone_id)
    pam.write_text("auth required pam_deny.so\n")
    os.utime(pam, (0, 0))  # written long ago: not a cluster being started
    starting = mount / clusterfilter.filter_name(starting_id)
    clusterfilter.make_cgroup(starting)
    clusterfilter.filter_ports(starting.name, starting, [1])  # its maker (us) runs
    try:
        assert cluster_leftovers(gone_id) == [
            clusterfilter.filter_name(gone_id),
            "cgroup",
            "PAM file",
        ]
        LocalCluster.sweep()
        assert cluster_leftovers(gone_id) == []
        assert cluster_leftovers(starting_id) == [starting.name, "cgroup"]
    finally:
        for each in (gone_id, starting_id):
            name = clusterfilter.filter_name(each)
            clusterfilter.remove_filter(name, mount / name)
        pam.unlink(missing_ok=True)


@NEEDS_CLUSTER
def test_sshdist_cluster_up_outlives_the_command(tmp_path: Path) -> None:
    from sshdist_kernel.localcluster import LocalCluster

    from .test_cli import sshdist

    where = str(tmp_path / "cluster")
    up = sshdist("cluster", "up", "1", "--auth", "publickey", "--dir", where)
    try:
        assert up.returncode == 0, up.stderr
        cluster = LocalCluster(where)
        assert not (tmp_path / "cluster" / "ownerwatch.log").exists()
        assert cluster.is_running() and cluster_leftovers(cluster.id)  # table, cgroup, PAM
    finally:
        down = sshdist("cluster", "down", "--dir", where)
    assert down.returncode == 0, down.stderr
    assert not cluster.is_running() and cluster_leftovers(cluster.id) == []


@NEEDS_CLUSTER
def test_a_cgroup_another_sweep_removes_meanwhile_is_no_error(monkeypatch) -> None:
    """Two sweeps (or a sweep and the cluster's own ``down()``) remove a gone cluster's
    cgroup at once: the one that finds it gone as it reads ``cgroup.procs`` does not
    fail (it raised FileNotFoundError or ENODEV, and left the table)."""
    cgroup = clusterfilter.cgroup2_mount() / clusterfilter.filter_name("0race000")
    cgroup.mkdir()
    is_dir = Path.is_dir

    def removed_once_seen(path: Path) -> bool:
        found = is_dir(path)
        if found and path == cgroup:
            cgroup.rmdir()  # the other sweep, now
        return found

    monkeypatch.setattr(Path, "is_dir", removed_once_seen)
    try:
        clusterfilter.remove_filter(cgroup.name, cgroup)
    finally:
        monkeypatch.undo()
        if cgroup.exists():
            cgroup.rmdir()


@NEEDS_CLUSTER
def test_a_sweep_that_cannot_list_the_tables_removes_nothing(monkeypatch) -> None:
    """nft failing (missing from PATH here; a timeout, an error) is no sign that no
    cluster runs: the sweep removed every PAM file over a minute old then, a running
    cluster's too, and its login node then let nobody in."""
    from sshdist_kernel.localcluster import LocalCluster

    mount = clusterfilter.cgroup2_mount()
    running = mount / clusterfilter.filter_name("0run0000")
    clusterfilter.make_cgroup(running)
    clusterfilter.filter_ports(running.name, running, [1])  # its maker (us) runs
    pam = clusterlogin.PAM_DIR / clusterlogin.pam_service("0run0000")
    pam.write_text("auth required pam_deny.so\n")
    os.utime(pam, (0, 0))  # written long ago: the cluster runs for a while now
    try:
        monkeypatch.setenv("PATH", "/nonexistent")
        LocalCluster.sweep()
        monkeypatch.undo()
        assert cluster_leftovers("0run0000") == [running.name, "cgroup", "PAM file"]
    finally:
        monkeypatch.undo()
        clusterfilter.remove_filter(running.name, running)
        pam.unlink(missing_ok=True)
