"""known_hosts files read as OpenSSH reads them: host patterns with wildcards and
negation, ``[host]:port`` names, hashed names, and the ``@revoked`` marker.

``@cert-authority`` lines are skipped: sshdist does not check host certificates, and
such a line must not break the rest of the file (paramiko's own reader fails on it).
Keys are decoded only for lines that name the host asked about.

Each file is parsed once and kept while its modification time and size stay the same
(``_parsed``): making 64 nodes against a known_hosts of 1,000 hosts reads it once, not
64 times. Plain names are looked up in a dict; hashed names and wildcard or negated
patterns cannot be, so they stay in a list checked line by line, as OpenSSH does.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import os
import re
import threading
from dataclasses import dataclass, field

import paramiko


@dataclass
class HostKeys:
    """What the files say about one host: its keys by type, and its revoked keys."""

    keys: dict[str, paramiko.PKey] = field(default_factory=dict)
    revoked: list[paramiko.PKey] = field(default_factory=list)

    def is_revoked(self, key: paramiko.PKey) -> bool:
        return any(r.asbytes() == key.asbytes() for r in self.revoked)


def _matches_hashed(pattern: str, name: str) -> bool:
    # |1|base64(salt)|base64(HMAC-SHA1(salt, name))
    try:
        _, magic, salt, digest = pattern.split("|")
        if magic != "1":
            return False
        want = base64.b64decode(digest)
        got = hmac.new(base64.b64decode(salt), name.encode(), hashlib.sha1).digest()
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(want, got)


@functools.lru_cache(maxsize=4096)
def _wildcard(pattern: str) -> re.Pattern[str]:
    # Only * and ? are special, as in OpenSSH: "[host]:port" is a literal name.
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def names_match(patterns: str, name: str) -> bool:
    """Whether a known_hosts host field (comma-separated patterns, ``!`` negates)
    names ``name``: a negated match wins over any other, as in OpenSSH."""
    if patterns.startswith("|"):
        return _matches_hashed(patterns, name)
    matched = False
    for pattern in patterns.split(","):
        negated = pattern.startswith("!")
        pattern = pattern[1:] if negated else pattern
        if pattern.lower() == name.lower() or (
            ("*" in pattern or "?" in pattern) and _wildcard(pattern).fullmatch(name)
        ):
            if negated:
                return False
            matched = True
    return matched


def _key(keytype: str, blob: str) -> paramiko.PKey | None:
    try:
        return paramiko.PKey.from_type_string(keytype, base64.b64decode(blob))
    except Exception:  # noqa: BLE001 - an unknown key type or a broken line: OpenSSH skips it
        return None


@dataclass(frozen=True)
class _Line:
    """One usable known_hosts line: where it is, its marker, its host field and key text."""

    number: int
    marker: str | None
    patterns: str
    keytype: str
    blob: str


@dataclass
class _KnownHostsFile:
    """A parsed known_hosts file: lines by each plain name they list (lower case), and
    the lines a name must be matched against one by one (hashed, wildcard, negated)."""

    stamp: tuple[int, int, int]
    by_name: dict[str, list[_Line]] = field(default_factory=dict)
    by_pattern: list[_Line] = field(default_factory=list)

    def lines_for(self, name: str) -> list[_Line]:
        found = list(self.by_name.get(name.lower(), ()))
        found += [line for line in self.by_pattern if names_match(line.patterns, name)]
        if len(found) > 1:
            found.sort(key=lambda line: line.number)  # the file's order decides, as in OpenSSH
        return found


def _parse(text: str, stamp: tuple[int, int, int]) -> _KnownHostsFile:
    parsed = _KnownHostsFile(stamp)
    for number, line in enumerate(text.splitlines()):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        marker = None
        if fields[0].startswith("@"):
            marker, fields = fields[0], fields[1:]
            if marker != "@revoked":
                continue  # @cert-authority: not checked by sshdist
        if len(fields) < 3:
            continue
        entry = _Line(number, marker, fields[0], fields[1], fields[2])
        names = entry.patterns.split(",")
        if entry.patterns.startswith("|") or any(
            n.startswith("!") or "*" in n or "?" in n for n in names
        ):
            parsed.by_pattern.append(entry)
        else:
            for n in dict.fromkeys(n.lower() for n in names):
                parsed.by_name.setdefault(n, []).append(entry)
    return parsed


_files: dict[str, _KnownHostsFile] = {}
_files_lock = threading.Lock()


def _parsed(path: str) -> _KnownHostsFile | None:
    """``path`` parsed, from the cache while the file is unchanged (same inode, size and
    modification time); None when it is missing or unreadable."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not os.path.isfile(path):
        return None
    stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
    # One lock around the read: threads making nodes at once wait for one parse.
    with _files_lock:
        cached = _files.get(path)
        if cached is not None and cached.stamp == stamp:
            return cached
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError:
            return None
        parsed = _files[path] = _parse(text, stamp)
    return parsed


def read_host_keys(paths: list[str], name: str) -> HostKeys:
    """The keys the known_hosts ``paths`` hold for ``name`` (``host`` or
    ``[host]:port``), and the ``@revoked`` keys that apply to it; unreadable files
    and broken lines are skipped."""
    found = HostKeys()
    for path in paths:
        parsed = _parsed(path)
        if parsed is None:
            continue
        for line in parsed.lines_for(name):
            key = _key(line.keytype, line.blob)
            if key is None:
                continue
            if line.marker == "@revoked":
                found.revoked.append(key)
            else:
                found.keys.setdefault(line.keytype, key)
    return found
