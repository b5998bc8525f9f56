"""What OpenSSH's files share here: each file parsed once while it stays the same
(ssh_config, known_hosts, key files), and OpenSSH's host pattern lists."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

T = TypeVar("T")

_parsed: dict[tuple[str, Callable[..., Any]], tuple[tuple[Any, ...], Any]] = {}
_lock = threading.Lock()


def _stamp(path: str) -> tuple[int, int, int, int] | None:
    """What changes when the file does: inode (replaced), size, modification time and
    change time (written, or its mode changed, which can make it readable)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def cached_parse(
    path: str | os.PathLike[str], parse: Callable[[str], T], *, companions: Iterable[str] = ()
) -> T | None:
    """``parse(path)``, once while the file (and each of ``companions``, files
    ``parse`` reads beside it) stays the same; None when ``path`` does not exist.
    What ``parse`` raises is raised, not kept."""
    path = os.fspath(path)
    stamp = _stamp(path)
    if stamp is None:
        return None
    stamps = (stamp, *(_stamp(c) for c in companions))
    key = (path, parse)
    # Held across the parse: hosts made at once wait for one parse, not each their own.
    with _lock:
        cached = _parsed.get(key)
        if cached is not None and cached[0] == stamps:
            return cached[1]
        result = parse(path)
        _parsed[key] = (stamps, result)
    return result


def forget_parsed() -> None:
    """Drop every parsed file: the next use reads them afresh, as a new process does."""
    with _lock:
        _parsed.clear()


def _wildcard(pattern: str) -> str:
    # Only * and ? are special, as in OpenSSH: "[host]:port" is a literal name.
    return "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)


class HostPatterns:
    """An OpenSSH pattern list (``Host`` lines, ``Match host``, known_hosts names):
    ``*`` and ``?`` wildcards, and ``!`` negates, a negated match winning over any other."""

    def __init__(self, patterns: Iterable[str], fold_case: bool) -> None:
        self.fold_case = fold_case
        self.literal: frozenset[str] | None = None
        """The names the list matches when it names hosts outright, else None."""
        pos: list[str] = []
        neg: list[str] = []
        for p in patterns:
            p = p.lower() if fold_case else p
            if p.startswith("!"):
                neg.append(p[1:])
            else:
                pos.append(p)
        self.pos: re.Pattern[str] | None = None
        self.neg: re.Pattern[str] | None = None
        if not neg and not any("*" in p or "?" in p for p in pos):
            # Most patterns name hosts outright: a set lookup, not a regex.
            self.literal = frozenset(pos)
            return
        self.pos = re.compile("|".join(map(_wildcard, pos)), re.DOTALL) if pos else None
        self.neg = re.compile("|".join(map(_wildcard, neg)), re.DOTALL) if neg else None

    def matches(self, name: str) -> bool:
        if self.fold_case:
            name = name.lower()
        if self.literal is not None:
            return name in self.literal
        if self.neg is not None and self.neg.fullmatch(name):
            return False
        return self.pos is not None and self.pos.fullmatch(name) is not None
