"""Local sshds end with the process that started them, however it ends.

``start(kind, directory)`` runs a small process (this file, standard library only) that
waits for its owner, the caller, to exit (on a pidfd: no polling, no pid reuse), then
becomes ``sshdist nodes down --dir directory`` (or ``cluster``), which reads the
directory's state file then, so nodes restarted or added since are stopped too.  It is
how ipykernel ends a kernel whose parent is gone, and what makes a SIGKILLed test run,
or a Jupyter kernel that ran ``%nodes --local`` and was killed, leave no sshd listening
and no cluster firewall table behind.  ``sshdist nodes up`` / ``sshdist cluster up``
start none: their nodes are meant to outlive the command, until ``down``.

The watcher is in a session of its own (a Ctrl-C in the owner's terminal does not
reach it); the owner's ``down()`` ends it.  Taken down by another (``sshdist nodes
down``), a directory may be started again by another process before the owner exits:
its ``OWNER`` file names that one then, and the first owner's watcher leaves it be.  A
directory removed while its sshds ran (a ``TemporaryDirectory`` left without ``down()``)
is taken down all the same: ``down`` finds them by their command line.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

KINDS = ("nodes", "cluster")
DOWN = (  # sshdist's CLI, from the folder in argv[1]
    "import sys; sys.path.insert(0, sys.argv.pop(1))\n"
    "from sshdist_kernel.cli import main\nsys.exit(main(sys.argv[1:]))"
)
OWNER = "owner"  # in a directory: "PID START" of the process its watcher waits for
POLL = 1.0  # seconds between looks at the parent where pidfds are missing (Linux < 5.3)


def watch(kind: str, directory: Path, persist: bool) -> subprocess.Popen[bytes] | None:
    """Make this process ``directory``'s owner: start its watcher (``start``), or with
    ``persist`` none, and disown it for any earlier owner's watcher still waiting."""
    if persist:
        (directory / OWNER).unlink(missing_ok=True)
        return None
    return start(kind, directory)


def start(kind: str, directory: Path) -> subprocess.Popen[bytes]:
    """Start the watcher of this process for ``directory`` (a ``kind`` of KINDS).  It
    takes the directory down only if this process is still its owner then (named in its
    ``OWNER`` file): not once another process has started nodes there since."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    me = f"{os.getpid()} {process_start(os.getpid())}"
    (directory / OWNER).write_text(me + "\n")
    with open(directory / "ownerwatch.log", "ab") as log:
        # -I: the standard library alone, not this file's folder, whose modules' names
        # could shadow it.
        return subprocess.Popen(
            [sys.executable, "-I", __file__, kind, str(directory), *me.split()],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            cwd="/",
        )


def stop(watcher: subprocess.Popen[bytes] | None) -> None:
    """End a watcher whose directory its owner took down itself."""
    if watcher is not None and watcher.poll() is None:
        watcher.kill()
        watcher.wait(5)


def process_start(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot, from /proc), or None if there is no
    such process: with the pid, names one process even once pids are reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def wait_for_parent(owner: int) -> None:
    """Return once ``owner``, the process that started this one, has exited.  Its pid
    comes from itself, not from ``getppid()``: killed before this process asked, it
    leaves it reparented to init (or a subreaper), which would be waited on forever."""
    try:
        pidfd = os.pidfd_open(owner)
    except ProcessLookupError:
        return
    except (AttributeError, OSError):  # no pidfd_open: watch for being reparented
        while os.getppid() == owner:
            time.sleep(POLL)
        return
    if os.getppid() != owner:  # it exited before the pidfd was taken (another has its pid)
        return
    select.select([pidfd], [], [])


def main(argv: list[str]) -> int:
    kind, directory, owner, started = argv
    wait_for_parent(int(owner))
    try:
        still_owner = Path(directory, OWNER).read_text().split() == [owner, started]
    except OSError:  # no such file: persisted since; no such directory: removed, the
        still_owner = not Path(directory).exists()  # sshds maybe left: down finds them
    if not still_owner:  # taken down, then up again by another process
        print(f"{time.strftime('%F %T')} owner gone: the {kind} in {directory} are not its own now")
        return 0
    print(f"{time.strftime('%F %T')} owner gone: stopping the {kind} in {directory}", flush=True)
    # The sshdist_kernel this file is part of, as the owner imported it: found where
    # it is, for it may be on no path but the owner's (a checkout, pytest's rootdir).
    package_parent = str(Path(__file__).resolve().parent.parent)
    down = [sys.executable, "-c", DOWN, package_parent, kind, "down", "--dir", directory]
    os.execv(sys.executable, down)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
