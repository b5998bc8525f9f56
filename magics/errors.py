"""How the magics fail: a few lines a person reads (node, job, Guile's message), never
a traceback through the library."""

from __future__ import annotations

from sshdist_kernel import NodeReplError


class SshdistError(Exception):
    """A failure shown as its message alone: IPython calls ``_render_traceback_``."""

    def _render_traceback_(self) -> list[str]:
        return [
            f"{type(self).__name__}: {line}" if i == 0 else line
            for i, line in enumerate(str(self).splitlines())
        ]


class CallStopped(KeyboardInterrupt):
    """Ctrl-C (or the stop button) during a call: still a ``KeyboardInterrupt``, shown
    as its one line (``dist_map interrupted: 20 of 60 items done on 3 nodes; nodes
    ready``), not a traceback through the magics."""

    def _render_traceback_(self) -> list[str]:
        return [str(self)]


def connecting_stopped(hosts: list[str]) -> CallStopped:
    """Ctrl-C while nodes were being made: what was made is closed again."""
    names = ", ".join(hosts[:4]) + (f" and {len(hosts) - 4} more" if len(hosts) > 4 else "")
    return CallStopped(f"interrupted while connecting to {names}: no node was made")


def explain(exc: BaseException, shown: bool = False) -> SshdistError:
    """The error as a few lines; what the failed code printed is added unless ``shown``
    (streamed already), and the jobs that moved on the way."""
    text = str(exc)
    if isinstance(exc, NodeReplError) and exc.output and not shown:
        text += f"\nprinted before the error: {exc.output[-500:]!r}"
    moves = getattr(exc, "moves", ())
    if moves:
        text += "\n" + "\n".join(f"  {m}" for m in moves)
    return SshdistError(text)
