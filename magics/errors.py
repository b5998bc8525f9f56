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
    (streamed already), and the jobs that moved on the way.

    It is both a ``SshdistError`` and ``exc``'s own class, with ``exc``'s attributes
    (``key``, ``node``, ``failures`` ...): ``except NodeReplError`` (or
    ``CancelledError``, ``AllNodesFailedError`` ...) around a magic catches it as it
    would around the library's call, and it is shown by that name."""
    text = str(exc)
    if isinstance(exc, NodeReplError) and exc.output and not shown:
        text += f"\nprinted before the error: {exc.output[-500:]!r}"
    moves = getattr(exc, "moves", ())
    if moves:
        text += "\n" + "\n".join(f"  {m}" for m in moves)
    try:
        kind = _explained(type(exc))
        error = kind.__new__(kind)
        Exception.__init__(error, text)
        error.__dict__.update(getattr(exc, "__dict__", {}))
        return error
    except TypeError:  # a class that cannot be mixed in (a built-in with a layout)
        return SshdistError(text)


_EXPLAINED: dict[type, type] = {}


def _explained(cls: type) -> type:
    """``cls`` with ``SshdistError``'s way of being shown, under ``cls``'s own name."""
    if isinstance(cls, type) and issubclass(cls, SshdistError):
        return cls
    kind = _EXPLAINED.get(cls)
    if kind is None:
        body = {"__str__": _text, "__module__": cls.__module__, "__qualname__": cls.__qualname__}
        kind = _EXPLAINED[cls] = type(cls.__name__, (SshdistError, cls), body)
    return kind


def _text(error: BaseException) -> str:
    return str(error.args[0]) if error.args else ""
