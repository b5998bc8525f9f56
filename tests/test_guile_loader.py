"""The loop's compiled copy on the node (``loader.scm``): made once in the background,
used by the next REPL, and never taken from a place another user could have written."""

from __future__ import annotations

import errno
import os
import shlex
import shutil
import time
from pathlib import Path

import pytest

from sshdist_kernel import Node, NodeReplError, make_node, with_ssh
from sshdist_kernel.guile import GuileRepl

from .conftest import wait_until

COMPILE_WAIT = 180.0
"""Seconds a background compile may take on a loaded machine (Guile 2.2 needs ~3 s alone)."""


def _open(ssh_config: str, cache_dir: Path, guile: str = "guile") -> Node:
    language = GuileRepl(guile, cache_dir=str(cache_dir))
    return make_node("node1", ssh_config=ssh_config, language=language)


def _compiled(cache_dir: Path) -> list[Path]:
    return sorted(cache_dir.glob("*.go")) if cache_dir.is_dir() else []


def _runs_compiled(node: Node, cache_dir: Path) -> bool:
    """Whether the node's REPL process mapped a compiled copy from ``cache_dir`` (the
    local nodes are this machine)."""
    return str(cache_dir) in Path(f"/proc/{node.rrepl.pid}/maps").read_text()


def _next_runs_compiled(ssh_config: str, cache_dir: Path, guile: str = "guile") -> None:
    """A REPL started now runs the compiled copy in ``cache_dir``, and works as ever."""
    with _open(ssh_config, cache_dir, guile) as node:
        assert _runs_compiled(node, cache_dir)
        _works(node)


def _wait_compiled(cache_dir: Path, wait: float = COMPILE_WAIT) -> Path:
    def done() -> bool:
        return bool(_compiled(cache_dir)) and not list(cache_dir.glob("*.lock"))

    wait_until(done, wait, f"a compiled loop in {cache_dir}")
    (go,) = _compiled(cache_dir)
    return go


def _works(node: Node) -> None:
    """What a user sees is the same, compiled or not: values, printed output (a child's
    too), and errors."""
    result = with_ssh(node, '(display "hi") (system "echo child") (+ 1 2)')
    assert (result.value, result.output) == (3, "hichild\n")
    with pytest.raises(NodeReplError, match="out of range: 5"):
        with_ssh(node, "(vector-ref (vector 1 2) 5)")
    assert with_ssh(node, "(define (f x) (* x 2)) (f 21)").value == 42


@pytest.fixture(scope="module")
def made(ssh_config: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache directory (missing, and its parent too, at first) once a REPL filled it."""
    cache_dir = tmp_path_factory.mktemp("cache") / "missing" / "sshdist"
    with _open(ssh_config, cache_dir) as first:
        assert not _runs_compiled(first, cache_dir)
        _works(first)
    _wait_compiled(cache_dir)
    return cache_dir


def test_the_first_repl_has_the_loop_compiled_and_the_next_runs_it(
    made: Path, ssh_config: str
) -> None:
    (go,) = _compiled(made)
    stamp = go.with_name(go.name + ".stamp")
    assert made.stat().st_mode & 0o777 == 0o700
    assert go.stat().st_mode & 0o777 == 0o600
    assert sorted(made.iterdir()) == [go, stamp]  # no source or lock left behind
    _next_runs_compiled(ssh_config, made)


def test_cache_false_runs_the_loop_from_its_source(made: Path, ssh_config: str) -> None:
    language = GuileRepl(cache=False, cache_dir=str(made))
    with make_node("node1", ssh_config=ssh_config, language=language) as node:
        assert not _runs_compiled(node, made)
        _works(node)


def test_a_cache_dir_that_cannot_be_made_means_running_from_source(
    ssh_config: str, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    with _open(ssh_config, blocker / "sshdist") as node:
        _works(node)
    assert blocker.read_text() == "not a directory\n"
    assert list(tmp_path.iterdir()) == [blocker]


def _copy(made: Path, to: Path) -> Path:
    """A copy of the cache ``made``, as good as the original: its compiled copy is a new
    file (a new inode), so its stamp is written again as the compile writes it (inode,
    size, modification time), else the loader would take it for a changed copy."""
    shutil.copytree(made, to)
    for go in _compiled(to):
        _stamp(go)
    return to


def _stamp(go: Path) -> None:
    """Write ``go``'s stamp as its compile would: the file is as the compile left it."""
    st = go.stat()
    seconds, nanoseconds = divmod(st.st_mtime_ns, 1_000_000_000)
    go.with_name(go.name + ".stamp").write_text(
        f"({st.st_ino} {st.st_size} {seconds} {nanoseconds})"
    )


def test_a_cache_dir_others_can_write_to_is_neither_used_nor_filled(
    made: Path, ssh_config: str, tmp_path: Path
) -> None:
    shared = _copy(made, tmp_path / "shared")
    shared.chmod(0o777)
    with _open(ssh_config, shared) as node:
        assert not _runs_compiled(node, shared)
        _works(node)
    assert [p.name for p in shared.iterdir()] == [p.name for p in made.iterdir()]


def test_a_compiled_copy_others_can_write_to_is_not_loaded(
    made: Path, ssh_config: str, tmp_path: Path
) -> None:
    cache_dir = _copy(made, tmp_path / "cache")
    (go,) = _compiled(cache_dir)
    go.chmod(0o666)
    with _open(ssh_config, cache_dir) as node:
        assert not _runs_compiled(node, cache_dir)
        _works(node)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user takes root")
@pytest.mark.parametrize("whose", ["directory", "file"])
def test_a_cache_of_another_users_is_not_used(
    made: Path, ssh_config: str, tmp_path: Path, whose: str
) -> None:
    cache_dir = _copy(made, tmp_path / "cache")
    (go,) = _compiled(cache_dir)
    os.chown(cache_dir if whose == "directory" else go, 65534, 65534)  # nobody
    with _open(ssh_config, cache_dir) as node:
        assert not _runs_compiled(node, cache_dir)
        _works(node)
    assert go.stat().st_size == next(iter(_compiled(made))).stat().st_size


def test_a_compiled_copy_guile_will_not_load_is_made_again(
    made: Path, ssh_config: str, tmp_path: Path
) -> None:
    cache_dir = _copy(made, tmp_path / "cache")
    (go,) = _compiled(cache_dir)
    go.write_bytes(b"not a compiled file")
    _stamp(go)  # unchanged since its compile, as far as the loader can tell: Guile says no
    # Copies of other versions: one unused for 40 days goes when a compile ends.
    unused, recent = cache_dir / "rrepl-old-1.go", cache_dir / "rrepl-recent-1.go"
    for other in (unused, recent):
        other.write_bytes(b"another version")
    long_ago = time.time() - 40 * 24 * 3600
    os.utime(unused, (long_ago, long_ago))
    with _open(ssh_config, cache_dir) as node:
        _works(node)
    wait_until(lambda: go.exists() and go.stat().st_size > 1000, COMPILE_WAIT, "a new copy")
    wait_until(lambda: not list(cache_dir.glob("*.lock")), COMPILE_WAIT, "the compile to end")
    stamp = go.name + ".stamp"
    assert sorted(p.name for p in cache_dir.iterdir()) == sorted([go.name, stamp, recent.name])
    os.utime(go, ns=(int(long_ago * 1e9), go.stat().st_mtime_ns))  # last used long ago
    with _open(ssh_config, cache_dir) as node:
        assert _runs_compiled(node, cache_dir)
    assert go.stat().st_atime > long_ago + 3600  # loading it marks it used


@pytest.mark.skipif(shutil.which("guile-2.2") is None, reason="no guile-2.2 here")
def test_guile_2_2_has_a_compiled_copy_of_its_own(
    made: Path, ssh_config: str, tmp_path: Path
) -> None:
    cache_dir = _copy(made, tmp_path / "cache")
    with _open(ssh_config, cache_dir, "guile-2.2") as node:
        assert node.rrepl.version.startswith("2.2.")
        assert not _runs_compiled(node, cache_dir)  # 3.0's copy is not 2.2's
        _works(node)
    wait_until(lambda: len(_compiled(cache_dir)) == 2, COMPILE_WAIT, "2.2's compiled loop")
    wait_until(lambda: not list(cache_dir.glob("*.lock")), COMPILE_WAIT, "the compile to end")
    _next_runs_compiled(ssh_config, cache_dir, "guile-2.2")


def test_a_compiled_copy_changed_since_its_compile_is_not_loaded_and_is_made_again(
    made: Path, ssh_config: str, tmp_path: Path
) -> None:
    cache_dir = _copy(made, tmp_path / "sshdist")
    (go,) = _compiled(cache_dir)
    _next_runs_compiled(ssh_config, cache_dir)  # loaded as long as it is unchanged
    with go.open("r+b") as damaged:  # bytes in the middle: Guile would still load it
        damaged.seek(go.stat().st_size // 3)
        damaged.write(b"\xff" * 512)
    with _open(ssh_config, cache_dir) as node:
        assert not _runs_compiled(node, cache_dir)
        _works(node)
    wait_until(lambda: go.exists(), COMPILE_WAIT, "a new copy")
    _wait_compiled(cache_dir)
    _next_runs_compiled(ssh_config, cache_dir)


def _ended(pid: int) -> bool:
    """Whether process ``pid`` of this machine has ended (gone, or a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def _let_through(gate: Path) -> bool:
    """Let the process waiting at the FIFO ``gate`` go on; False if none waits there."""
    try:
        fd = os.open(gate, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as e:
        if e.errno == errno.ENXIO:  # nobody has it open to read
            return False
        raise
    try:
        os.write(fd, b"go\n")
    finally:
        os.close(fd)
    return True


def test_a_repl_that_ends_at_once_still_leaves_its_compiled_copy(
    ssh_config: str, tmp_path: Path
) -> None:
    # A Guile slow to start, as on a loaded machine: the REPL ends (and stops its
    # process group) before the compile it began has started.  The compile's Guile
    # (its command is the one that begins with its setsid) waits at a gate that opens
    # only once the REPL has ended; the REPL's own Guile starts at once.
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    slow = tmp_path / "slow-guile"
    slow.write_text(
        "#!/bin/bash\n"
        'case "${!#}" in "(false-if-exception (setsid))"*)\n'
        f"  exec 3<>{shlex.quote(str(gate))}; read -r -t 60 _ <&3; exec 3<&-;;\n"
        "esac\n"
        'exec guile "$@"\n'
    )
    slow.chmod(0o755)
    cache_dir = tmp_path / "cache"
    with _open(ssh_config, cache_dir, guile=str(slow)) as node:
        assert with_ssh(node, "(+ 1 2)").value == 3
        repl = node.rrepl.pid
    wait_until(lambda: _ended(repl), 30.0, "the REPL to end")
    wait_until(lambda: _let_through(gate), 30.0, "the compile waiting at the gate")
    _wait_compiled(cache_dir, wait=60.0)


def test_a_cache_dir_under_home_is_expanded_and_a_relative_one_is_not_used(
    made: Path, ssh_config: str
) -> None:
    name = f"sshdist-test-cache-{os.getpid()}"
    home = Path.home()  # the local nodes run as this user, with this home
    try:
        with _open(ssh_config, Path(name)) as node:  # relative: no cache, nothing made
            _works(node)
        assert not (home / name).exists() and not Path(name).exists()
        _copy(made, home / name)
        language = GuileRepl(cache_dir=f"~/{name}")
        with make_node("node1", ssh_config=ssh_config, language=language) as node:
            assert _runs_compiled(node, home / name)  # the copy in $HOME/name
            _works(node)
        assert not (home / "~").exists()
    finally:
        shutil.rmtree(home / name, ignore_errors=True)
