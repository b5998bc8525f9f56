"""One fixture builds a real, throwaway SSH world: sshd processes on 127.0.0.1 with
their own keys, ssh_config and known_hosts (the same code as ``sshdist nodes up``)."""

from __future__ import annotations

import atexit
import importlib.util
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

# -- make test: the files in parallel (pytest -n N --dist loadfile) ------------------------

BROWSER_GROUPS = {
    "test_browser.py": "browser:load+live",
    "test_browser_live.py": "browser:load+live",
    "test_browser_rich.py": "browser:rich+cluster",
    "test_browser_cluster.py": "browser:rich+cluster",
}
"""The browser test files, two by two: each test starts a JupyterLab and a Chromium, the
heaviest processes of the suite, so no more than two browsers run at once.  (The
machine-load test in test_browser.py runs low-priority busy loops until the load is
past the cores: at nice 19 they leave the other workers' tests their CPU.)"""

SLOW_FIRST = {
    "browser:load+live": 60,
    "browser:rich+cluster": 40,
    "tests/test_kernel.py": 60,
    "tests/test_node_failures.py": 55,
    "tests/test_dist.py": 50,
    "tests/test_guile_loader.py": 50,
    "tests/test_pipeline_redteam.py": 45,
    "tests/test_rrepl.py": 35,
    "tests/test_notebooks.py": 34,
    "tests/test_openssh_transport.py": 25,
    "tests/test_magics.py": 23,
    "tests/test_localcluster.py": 21,
    "tests/test_cluster_login.py": 20,
    "tests/test_distcall.py": 20,
    "tests/test_handover_redteam.py": 20,
}
"""Seconds a scope (a file, or a group of them) took alone, for the slowest: under xdist
they are handed out first, so that none of them starts last and runs on alone."""


def scope_of(nodeid: str) -> str:
    """What one xdist worker runs as a whole: a test file (its module fixtures made
    once, its tests in their order), or a group of browser files."""
    path = nodeid.split("::", 1)[0]
    return BROWSER_GROUPS.get(path.rsplit("/", 1)[-1], path)


def pytest_configure(config: pytest.Config) -> None:
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # Started in a shell's background (``make test &``, nohup, some CI runners):
        # the Ctrl-C tests need Python's own handler here, and the terminals, kernels
        # and workers started from here would inherit an ignored SIGINT (a handler is
        # reset by exec, an ignored signal is not).
        signal.signal(signal.SIGINT, signal.default_int_handler)
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker and "IPYTHONDIR" not in os.environ:
        # Each worker's shells and kernels keep their history in a database of their
        # own, not all in ~/.ipython's one SQLite file at once.
        folder = tempfile.mkdtemp(prefix=f"ipython-{worker}-")
        os.environ["IPYTHONDIR"] = folder
        # Removed as the worker exits: after IPython's own exit handler, registered
        # later, has written the shell's last history there (atexit runs last first).
        atexit.register(shutil.rmtree, folder, True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):  # the same order on every worker
        items.sort(key=lambda item: -SLOW_FIRST.get(scope_of(item.nodeid), 0))


if importlib.util.find_spec("xdist") is not None:

    def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
        """``--dist loadfile``, with the browser files in their groups and the scopes
        handed out in the collection's order (the slowest first) rather than by their
        number of tests."""
        if config.getvalue("dist") != "loadfile":
            return None
        from xdist.scheduler import LoadScopeScheduling

        class FileScheduling(LoadScopeScheduling):
            def _split_scope(self, nodeid: str) -> str:
                return scope_of(nodeid)

        config.option.loadscopereorder = False
        return FileScheduling(config, log)


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


def held_until_killed(victim: Node, flag: Path, then: str = "(usleep 20000) (* 2 x)") -> str:
    """A proc whose items run ``then``, except that ``victim``'s REPL, at its first item,
    makes ``flag`` and sleeps: killed then, it dies holding a chunk, however late the
    kill comes."""
    return (
        f"(lambda (x) (when (= (getpid) {victim.rrepl.pid}) "
        f'(close-port (open-output-file "{flag}")) (sleep 60)) {then})'
    )


def held_eval(flag: Path, seconds: int = 5) -> str:
    """An expression that makes ``flag`` once it runs, then sleeps ``seconds`` and
    answers 1: a kill after ``flag`` (``kill_once_held``) lands during the call."""
    return f'(begin (close-port (open-output-file "{flag}")) (sleep {seconds}) 1)'


def kill_once_held(flag: Path, kill: Callable[[], None]) -> threading.Thread:
    """A thread that runs ``kill`` once ``flag`` exists (``held_until_killed``).  (A kill
    on a timer, or on the victim's "start" event, can land before its chunk is sent or
    between two chunks: the node then opens a fresh REPL for the next, and nothing fails
    over.)"""

    def watch() -> None:
        deadline = time.monotonic() + 30
        while not flag.exists():
            if time.monotonic() > deadline:
                return  # never held: the test's failover checks say so
            _tick.wait(0.005)
        kill()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def quick_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Silence noticed sooner: a wait asks the connection after 0.5 s of it (not 2 s)
    and gives the answer 1.5 s (not 3 s).  The same code runs; the tests of silent
    peers wait less.  Bounds in those tests are written from ``records``' values."""
    from sshdist_kernel import records

    monkeypatch.setattr(records, "PROBE_AFTER", 0.5)
    monkeypatch.setattr(records, "PROBE_DEADLINE", 1.5)


@pytest.fixture
def quick_recovery(monkeypatch: pytest.MonkeyPatch) -> None:
    """An abandoned evaluation has 0.5 s per interrupt to stop (not 2 s) before the next
    of the three, so a REPL that will not stop is given up in 1.5 s, not 6 s.  The
    acknowledgement's bound (``ACK_WAIT``) is unchanged."""
    from sshdist_kernel import replinterrupts

    monkeypatch.setattr(replinterrupts, "RECOVERY_WAIT", 0.5)


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


def start_kernel(name: str, timeout: float = 60, **manager: Any) -> tuple[Any, Any]:
    """``jupyter_client.manager.start_new_kernel`` for kernelspec ``name``, tried again
    when the kernel died before answering ``kernel_info``: jupyter_client picks TCP
    ports that are free when picked, and another worker's SSH connection can take one
    before the kernel binds it ("Address already in use", seen under -n 4).  ``manager``:
    the ``KernelManager``'s options instead of start_new_kernel's (``transport="ipc"``
    and ``ip``, a socket path's prefix: Unix sockets, which avoid that race)."""
    from jupyter_client.manager import KernelManager, start_new_kernel

    for attempt in range(3):
        try:
            if not manager:
                return start_new_kernel(kernel_name=name, startup_timeout=timeout)
            km = KernelManager(kernel_name=name, **manager)
            km.start_kernel()
            kc = km.client()
            kc.start_channels()
            try:
                kc.wait_for_ready(timeout=timeout)
            except RuntimeError:
                kc.stop_channels()
                km.shutdown_kernel()
                raise
            return km, kc
        except RuntimeError as exc:
            if "died before replying" not in str(exc) or attempt == 2:
                raise
    raise AssertionError("unreachable")


@contextmanager
def script_kernel(
    script: str,
    name: str,
    ssh_config: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    **manager: Any,
) -> Iterator[Any]:
    """A client of a Guile kernel for node1 run as ``python -c script`` (a script that
    patches the kernel, then calls ``sshdist_kernel.kernel.main``), kernelspec ``name``;
    ``manager``: as ``start_kernel``'s."""
    spec = tmp_path / "share" / "jupyter" / "kernels" / name
    spec.mkdir(parents=True)
    argv = [sys.executable, "-c", script, "-f", "{connection_file}"]
    argv += ["--host", "node1", "--ssh-config", ssh_config, "--kernel-name", name]
    kernel_json = {"argv": argv, "display_name": name, "language": "scheme"}
    (spec / "kernel.json").write_text(json.dumps({**kernel_json, "interrupt_mode": "signal"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "share" / "jupyter"))
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "data"))
    km, kc = start_kernel(name, **manager)
    try:
        yield kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


@pytest.fixture(scope="module")
def kept_nodes() -> Iterator[list[Node]]:
    """Where a module's shared nodes stay between its tests (``reuse_or_make``); closed
    after the module."""
    kept: list[Node] = []
    yield kept
    for n in kept:
        n.close()


def as_left(n: Node) -> bool:
    """The node's first REPL is idle, in (guile-user) and Scheme, with nothing left to
    print or show: as a test that shares it must leave it."""
    if not n.ready or n.restarts:
        return False
    try:
        check = n.rrepl.eval("(+ 1 1)", timeout=10)
    except Exception:  # noqa: BLE001 - any failure: the node is not as it was left
        return False
    answer = (check.value, check.module, check.language, check.output, check.error_output)
    return answer == (2, "(guile-user)", "scheme", "", "") and not check.displays


def reuse_or_make(kept: list[Node], make: Callable[[], list[Node]]) -> list[Node]:
    """The nodes ``kept`` for a module's tests if each is as left (``as_left``), else
    fresh ones from ``make`` in their place (a test before failed half way, or cut the
    nodes' connections)."""
    if kept and all(as_left(n) for n in kept):
        return list(kept)
    for n in kept:
        n.close()
    kept[:] = make()
    return list(kept)
