"""known_hosts files read as OpenSSH reads them: host patterns with wildcards and
negation, ``[host]:port`` names, hashed names, and the ``@revoked`` marker.

``@cert-authority`` lines are skipped: sshdist does not check host certificates, and
such a line must not break the rest of the file (paramiko's own reader fails on it).
Keys are decoded only for lines that name the host asked about.

Each file is parsed once and kept while it stays the same (``sshfiles.cached_parse``):
making 64 nodes against a known_hosts of 1,000 hosts reads it once, not 64 times.
Plain names are looked up in a dict; hashed names and wildcard or negated patterns
cannot be, so they stay in a list checked line by line, as OpenSSH does.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import paramiko

from .sshfiles import HostPatterns, cached_parse


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


def names_match(patterns: str, name: str) -> bool:
    """Whether a known_hosts host field (comma-separated patterns, ``!`` negates)
    names ``name``: a negated match wins over any other, as in OpenSSH."""
    if patterns.startswith("|"):
        return _matches_hashed(patterns, name)
    return HostPatterns(patterns.split(","), fold_case=True).matches(name)


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

    by_name: dict[str, list[_Line]] = field(default_factory=dict)
    by_pattern: list[tuple[_Line, Callable[[str], bool]]] = field(default_factory=list)

    def lines_for(self, name: str) -> list[_Line]:
        found = list(self.by_name.get(name.lower(), ()))
        found += [line for line, hosts in self.by_pattern if hosts(name)]
        if len(found) > 1:
            found.sort(key=lambda line: line.number)  # the file's order decides, as in OpenSSH
        return found


def _parse(path: str) -> _KnownHostsFile | None:
    """The file's usable lines, indexed; None if it cannot be read or is not a file
    (a FIFO would block the read)."""
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    parsed = _KnownHostsFile()
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
        if entry.patterns.startswith("|"):
            parsed.by_pattern.append((entry, functools.partial(_matches_hashed, entry.patterns)))
            continue
        hosts = HostPatterns(entry.patterns.split(","), fold_case=True)
        if hosts.literal is None:
            parsed.by_pattern.append((entry, hosts.matches))
        else:
            for n in hosts.literal:
                parsed.by_name.setdefault(n, []).append(entry)
    return parsed


def read_host_keys(paths: list[str], name: str) -> HostKeys:
    """The keys the known_hosts ``paths`` hold for ``name`` (``host`` or
    ``[host]:port``), and the ``@revoked`` keys that apply to it; unreadable files
    and broken lines are skipped."""
    found = HostKeys()
    for path in paths:
        parsed = cached_parse(path, _parse)
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
