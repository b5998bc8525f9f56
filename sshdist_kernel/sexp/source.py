"""Where a piece of Scheme source stands: complete, still open, or broken."""

from __future__ import annotations

import re

_SOURCE_TOKEN = re.compile(
    r"""[^"();\[\]\#|]+
      | (?P<string>"(?:[^"\\]|\\.)*(?P<closed>")?)
      | (?P<comment>;[^\n]*)
      | (?P<block_open>\#\|) | (?P<block_close>\|\#)
      | (?P<char>\#\\.)
      | (?P<symbol>\#\{.*?\}\#)
      | (?P<open>[(\[]) | (?P<close>[)\]])""",
    re.VERBOSE | re.DOTALL,
)


def input_status(source: str) -> str:
    """``complete``, ``incomplete`` (a form is still open) or ``invalid`` (a stray ``)``),
    found the way Guile's reader would, without evaluating anything.  Regex-driven, so
    a megabyte of quoted data is scanned in milliseconds."""
    depth = 0
    block = 0  # nesting of #| |# comments
    for m in _SOURCE_TOKEN.finditer(source):
        kind = m.lastgroup if m.lastgroup != "closed" else "string"
        if kind is None:  # a run of characters that matter to no form boundary
            continue
        if block:
            if kind == "block_open":
                block += 1
            elif kind == "block_close":
                block -= 1
            continue
        if kind == "string":
            if m.group("closed") is None:
                return "incomplete"
        elif kind == "block_open":
            block = 1
        elif kind == "open":
            depth += 1
        elif kind == "close":
            depth -= 1
            if depth < 0:
                return "invalid"
    if block or depth > 0:
        return "incomplete"
    stripped = source.rstrip()
    if stripped.endswith(("'", "`", ",", ",@", "#;")) and not stripped.startswith(","):
        return "incomplete"
    return "complete"
