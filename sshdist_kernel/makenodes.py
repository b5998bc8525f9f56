"""Making many nodes at once: a bounded number of handshakes in flight, results in the
order of the hosts, and either all-or-nothing or the nodes that came up plus a report
of the hosts that did not."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from .errors import NodeError, SshConfigError
from .prompts import PromptRelay

MAX_CONNECTING = 64
"""Hosts ``make_nodes`` connects to at once: enough to hide a handshake's round trips,
few enough that hundreds of hosts do not mean hundreds of threads and sockets at once."""

ON_ERROR = ("raise", "skip")


class MadeNodes(list):
    """``make_nodes``' result: the nodes that came up, in the order of the hosts, and
    ``failed``: each host that did not (``on_error="skip"``) with the reason, in order."""

    def __init__(self, nodes: Sequence[Any] = (), failed: dict[str, str] | None = None) -> None:
        super().__init__(nodes)
        self.failed: dict[str, str] = dict(failed or {})

    def summary(self) -> str:
        """One line: ``28 of 32 nodes up; 4 hosts failed: node3, node7, node9, node12``."""
        total = len(self) + len(self.failed)
        if not self.failed:
            return f"{total} node(s) up"
        names = list(self.failed)
        shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
        return f"{len(self)} of {total} nodes up; {len(names)} host(s) failed: {shown}"

    def __repr__(self) -> str:
        if not self.failed:
            return super().__repr__()
        return f"{super().__repr__()} + failed {self.failed!r}"


def _name(host: object) -> str:
    options = getattr(host, "options", None)  # a Session: its ssh_config alias
    return str(getattr(options, "alias", None) or host)


def connect_all(
    hosts: Sequence[Any],
    make: Callable[[Any], Any],
    *,
    max_connecting: int = MAX_CONNECTING,
    on_error: str = "raise",
    relay: PromptRelay | None = None,
) -> MadeNodes:
    """``make(host)`` for each host, at most ``max_connecting`` at a time; see
    ``make_nodes``.  What ``make`` returns must have ``close()``.  ``relay``'s questions
    (codes, passwords) are asked on this thread while the hosts connect."""
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
    if type(max_connecting) is not int or max_connecting < 1:
        raise ValueError(f"max_connecting must be a whole number >= 1, not {max_connecting!r}")
    results: list[Any] = [None] * len(hosts)
    lock = threading.Lock()
    state = {"next": 0, "stop": False, "abandoned": False}

    def work() -> None:
        try:
            take_hosts()
        finally:
            if relay is not None:
                relay.finished()

    def take_hosts() -> None:
        while True:
            with lock:
                i = state["next"]
                if state["stop"] or i >= len(hosts):
                    return
                state["next"] = i + 1
            try:
                made = make(hosts[i])
            except BaseException as exc:  # noqa: BLE001 - reported or re-raised by the caller
                with lock:
                    results[i] = exc
                    if not _skippable(exc, on_error):
                        state["stop"] = True  # start no more: the call fails anyway
                continue
            with lock:
                keep = not state["abandoned"]
                if keep:
                    results[i] = made
            if not keep:
                made.close()

    threads = [
        threading.Thread(target=work, daemon=True, name="sshdist connecting")
        for _ in range(min(max_connecting, len(hosts)))
    ]
    try:
        for t in threads:  # a Ctrl-C here too: the started workers may be asking already
            t.start()
        if relay is not None:
            relay.serve(len(threads))
        for t in threads:
            t.join()
    except KeyboardInterrupt:
        with lock:
            state["abandoned"] = state["stop"] = True
            made = [r for r in results if r is not None and not isinstance(r, BaseException)]
        if relay is not None:
            relay.interrupted()
        for m in made:
            m.close()
        raise
    errors = [r for r in results if isinstance(r, BaseException)]
    fatal = [e for e in errors if not _skippable(e, on_error)]
    if fatal:
        for r in results:
            if r is not None and not isinstance(r, BaseException):
                r.close()
        raise fatal[0]
    pairs = list(zip(hosts, results, strict=True))
    failed = {_name(h): str(r) for h, r in pairs if isinstance(r, BaseException)}
    return MadeNodes([r for r in results if not isinstance(r, BaseException)], failed)


def _skippable(exc: BaseException, on_error: str) -> bool:
    """A host's failure that ``on_error="skip"`` leaves out: that host's own, not a
    broken ssh_config (every host would fail alike) nor a bug or Ctrl-C."""
    return on_error == "skip" and isinstance(exc, NodeError) and not isinstance(exc, SshConfigError)
