"""One fixture builds a real, throwaway SSH world: sshd processes on 127.0.0.1 with
their own keys, ssh_config and known_hosts (the same code as ``sshdist nodes up``)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from sshdist_kernel import Node, make_node, make_nodes
from sshdist_kernel.localnodes import LocalNodes


def group_of(item: pytest.Item) -> str:
    """The xdist group a test runs in (``make test``: ``pytest -n N --dist loadgroup``):
    its file's, so a module's fixtures are made once and its tests keep their order, as
    with ``--dist loadfile``.  The browser tests are one group, run one after another
    on one worker: each starts a JupyterLab and a Chromium (the heaviest processes of
    the suite), and test_browser.py's load test runs busy loops until the machine's
    load is well past its cores."""
    name = item.path.name
    return "browser" if name.startswith("test_browser") else name.removesuffix(".py")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(group_of(item)))


@pytest.fixture(scope="session")
def local_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNodes]:
    nodes = LocalNodes.up(3, tmp_path_factory.mktemp("nodes"))
    yield nodes
    nodes.down()


@pytest.fixture(scope="session")
def local_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A login node asking for a key and a TOTP code, and compute nodes cn01..cn04 that
    only it can reach (``sshdist_kernel.localcluster``); started by the first test that
    asks for it, never by the fixtures above.  Needs root.  Codes: ``totp_code()``."""
    if os.geteuid() != 0:
        pytest.skip("a local cluster needs root: it writes /etc/pam.d, a cgroup and nft rules")
    from sshdist_kernel.localcluster import LocalCluster

    cluster = LocalCluster.up(tmp_path_factory.mktemp("cluster"), compute=4)
    yield cluster
    cluster.down()


@pytest.fixture(scope="module")
def private_control_dir() -> Iterator[Path]:
    """The openssh transport's control sockets in a directory of the module's (short:
    sockets); a module asks for it with ``pytest.mark.usefixtures``."""
    folder = Path(tempfile.mkdtemp(prefix="sd-", dir="/tmp")) / "cm"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SSHDIST_CONTROL_DIR", str(folder))
        yield folder
    shutil.rmtree(folder.parent, ignore_errors=True)


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A fresh directory with a short path, for Unix sockets (108 bytes at most): under
    an xdist worker tmp_path is long (``/tmp/pytest-of-root/pytest-N/popen-gw0/...``).
    Ask for it before the fixtures whose teardown still needs its sockets."""
    folder = Path(tempfile.mkdtemp(prefix="sd-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def ssh_config(local_nodes: LocalNodes) -> str:
    return str(local_nodes.ssh_config)


@pytest.fixture
def node(ssh_config: str) -> Iterator[Node]:
    """A fresh node on node1, closed after the test."""
    n = make_node("node1", ssh_config=ssh_config)
    yield n
    n.close()


@pytest.fixture(scope="module")
def shared_node(ssh_config: str) -> Iterator[Node]:
    """One node for a module's read-only tests; its REPL state carries between them."""
    n = make_node("node2", ssh_config=ssh_config)
    yield n
    n.close()


_tick = threading.Event()  # never set: a bounded pause between polls


def wait_until(condition: Callable[[], object], timeout: float = 10.0, what: str = "") -> None:
    """Poll ``condition`` until it is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what or condition}")
        _tick.wait(0.02)


@pytest.fixture
def stopped() -> Iterator[list[int]]:
    """Processes a test SIGSTOPs; they are continued when it ends, whatever happens."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


@pytest.fixture
def nodes(ssh_config: str) -> Iterator[list[Node]]:
    """Fresh nodes on node1..node3 for each test: tests kill, stop and interrupt them."""
    made = make_nodes(["node1", "node2", "node3"], ssh_config=ssh_config)
    yield made
    for n in made:
        n.close()


@contextmanager
def script_kernel(
    script: str, name: str, ssh_config: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    """A client of a Guile kernel for node1 run as ``python -c script`` (a script that
    patches the kernel, then calls ``sshdist_kernel.kernel.main``), kernelspec ``name``."""
    from jupyter_client.manager import start_new_kernel

    spec = tmp_path / "share" / "jupyter" / "kernels" / name
    spec.mkdir(parents=True)
    argv = [sys.executable, "-c", script, "-f", "{connection_file}"]
    argv += ["--host", "node1", "--ssh-config", ssh_config, "--kernel-name", name]
    kernel_json = {"argv": argv, "display_name": name, "language": "scheme"}
    (spec / "kernel.json").write_text(json.dumps({**kernel_json, "interrupt_mode": "signal"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "share" / "jupyter"))
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "data"))
    km, kc = start_new_kernel(kernel_name=name, startup_timeout=60)
    try:
        yield kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
