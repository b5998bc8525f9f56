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


_PREFIXES = (",@", "'", "`", ",", "#'", "#`", "#,@", "#,")
_DELIMITERS = set(' \t\n\r\f\v()[]";')


def _skip_space(source: str, i: int) -> int:
    """Past whitespace and comments (``;``, nested ``#| |#``)."""
    n = len(source)
    while i < n:
        c = source[i]
        if c.isspace():
            i += 1
        elif c == ";":
            j = source.find("\n", i)
            i = n if j < 0 else j + 1
        elif source.startswith("#|", i):
            level, i = 1, i + 2
            while level and i < n:
                if source.startswith("|#", i):
                    level, i = level - 1, i + 2
                elif source.startswith("#|", i):
                    level, i = level + 1, i + 2
                else:
                    i += 1
        else:
            return i
    return i


def datum_end(source: str, i: int) -> int:
    """Where the datum that starts at ``i`` ends (prefixes such as ``'`` included);
    ``ValueError`` if it does not end."""
    n = len(source)
    for prefix in sorted(_PREFIXES, key=len, reverse=True):
        if source.startswith(prefix, i):
            return datum_end(source, _skip_space(source, i + len(prefix)))
    if i >= n:
        raise ValueError("the source ends where a datum should be")
    if source.startswith("#;", i):  # a datum comment and the datum it hides, then the next
        hidden = datum_end(source, _skip_space(source, i + 2))
        return datum_end(source, _skip_space(source, hidden))
    if source.startswith("#{", i):
        j = source.find("}#", i + 2)
        if j < 0:
            raise ValueError("#{ is not closed")
        return j + 2
    if source.startswith("#\\", i):
        j = i + 3
        while j < n and source[j] not in _DELIMITERS:
            j += 1
        return j
    if source[i] == '"':
        m = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL).match(source, i)
        if not m:
            raise ValueError("a string is not closed")
        return m.end()
    open_at = i
    if source[i] == "#":  # #( #vu8( #u8( ... open a vector
        j = i + 1
        while j < n and source[j].isalnum():
            j += 1
        if j < n and source[j] == "(":
            open_at = j
    if source[open_at] in "([":
        depth, j = 0, open_at
        while j < n:
            j = _skip_space(source, j)
            if j >= n:
                break
            c = source[j]
            if c in "([":
                depth, j = depth + 1, j + 1
            elif c in ")]":
                depth, j = depth - 1, j + 1
                if depth == 0:
                    return j
            else:
                j = datum_end(source, j)
        raise ValueError("a form is not closed")
    if source[i] in ")]":
        raise ValueError(f"unexpected {source[i]!r}")
    j = i
    while j < n and source[j] not in _DELIMITERS:
        j += 1
    return j


def split_forms(source: str) -> list[str]:
    """The top-level forms of ``source``, each as its own text, in order."""
    forms, i = [], _skip_space(source, 0)
    while i < len(source):
        end = datum_end(source, i)
        forms.append(source[i:end])
        i = _skip_space(source, end)
    return forms


_SYMBOL_CHAR = re.compile(r"[^\s()\[\]{}\"';`,#|]\Z")
_HEAD = re.compile(r"\s*([^\s()\[\]{}\"';`,#|]+)")


def clamped_cursor(source: str, cursor_pos: object) -> int:
    """A front end's cursor, within ``source`` (None, or past the end, is the end)."""
    if not isinstance(cursor_pos, int):
        return len(source)
    return max(0, min(cursor_pos, len(source)))


def word_at(source: str, cursor_pos: int) -> tuple[str, int]:
    """The part of a symbol that ends at ``cursor_pos``, and where it starts."""
    start = cursor_pos
    while start > 0 and _SYMBOL_CHAR.match(source[start - 1]):
        start -= 1
    return source[start:cursor_pos], start


def name_at(source: str, cursor_pos: int) -> str:
    """The symbol the cursor is on; else the name the form around the cursor begins
    with (``(add 1 |`` gives ``add``), as IPython inspects the call the cursor is in."""
    end = cursor_pos
    while end < len(source) and _SYMBOL_CHAR.match(source[end]):
        end += 1
    name = word_at(source, end)[0]
    if name:
        return name
    depth = 0
    for i in range(cursor_pos - 1, -1, -1):
        if source[i] == ")":
            depth += 1
        elif source[i] == "(":
            if depth == 0:
                head = _HEAD.match(source, i + 1)
                return head.group(1) if head else ""
            depth -= 1
    return ""
