"""known_hosts files read as OpenSSH reads them: host patterns with wildcards and
negation, ``[host]:port`` names, hashed names, and the ``@revoked`` marker.

``@cert-authority`` lines are skipped: sshdist does not check host certificates, and
such a line must not break the rest of the file (paramiko's own reader fails on it).
Keys are decoded only for lines that name the host asked about.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import os
import re
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


def read_host_keys(paths: list[str], name: str) -> HostKeys:
    """The keys the known_hosts ``paths`` hold for ``name`` (``host`` or
    ``[host]:port``), and the ``@revoked`` keys that apply to it; unreadable files
    and broken lines are skipped."""
    found = HostKeys()
    for path in paths:
        if not os.path.isfile(path):
            continue
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                lines = f.readlines()
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            marker = None
            if fields[0].startswith("@"):
                marker, fields = fields[0], fields[1:]
            if len(fields) < 3:
                continue
            patterns, keytype, blob = fields[0], fields[1], fields[2]
            if marker == "@revoked":
                key = _key(keytype, blob) if names_match(patterns, name) else None
                if key is not None:
                    found.revoked.append(key)
            elif marker is None and names_match(patterns, name):
                key = _key(keytype, blob)
                if key is not None:
                    found.keys.setdefault(keytype, key)
    return found
