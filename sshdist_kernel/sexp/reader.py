"""Guile's printed data to Python values."""

from __future__ import annotations

import re
from typing import Any

from .data import CHAR_NAMES, Char, Keyword, Opaque, Pair, SexpError, Symbol, number

_STRING_ESCAPES = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "a": "\x07",
    "b": "\x08",
    "f": "\x0c",
    "v": "\x0b",
    "0": "\0",
    "\\": "\\",
    '"': '"',
}
_TOKEN = re.compile(
    r"""\s*(?:
      (?P<open>\(|\[|\#\(|\#vu8\()
    | (?P<close>\)|\])
    | (?P<string>"(?:[^"\\]|\\.)*")
    | (?P<char>\#\\(?:x[0-9a-fA-F]+|[0-7]{2,}|[a-zA-Z][a-zA-Z0-9]+|.))
    | (?P<opaque>\#<)
    | (?P<srfi4>\#[suf](?:8|16|32|64)\()
    | (?P<barsym>\#\{.*?\}\#)
    | (?P<quote>'|`|,@|,)
    | (?P<hash>\#(?:true|false|t|f|nil|:[^\s()\[\]";]+))
    | (?P<atom>[^\s()\[\]";'`,][^\s()\[\]";]*)
    )""",
    re.VERBOSE | re.DOTALL,
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_FLAT_NUMBERS = re.compile(r"[-\d. e]+")
_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{6}|\n[ \t]*|.)", re.DOTALL)
# Guile escapes only as \xHH; inside #{...}#, and writes "}" that way, so the first
# "}#" ends the symbol and any other backslash is itself (Guile prints `0\` as #{0\}#).
_BAR_ESCAPE = re.compile(r"\\x([0-9a-fA-F]+);")


def _unescape(body: str) -> str:
    def one(m: re.Match[str]) -> str:
        e = m.group(1)
        if e[0] in "xuU" and len(e) > 1:
            return chr(int(e[1:], 16))
        if e[0] == "\n":
            return ""
        return _STRING_ESCAPES.get(e, e)

    return _ESCAPE.sub(one, body) if "\\" in body else body


def _char(text: str) -> Char:
    body = text[2:]
    if len(body) == 1:
        return Char(body)
    if body in CHAR_NAMES:
        return Char(CHAR_NAMES[body])
    if body[0] == "x":
        return Char(chr(int(body[1:], 16)))
    if body.isdigit():
        return Char(chr(int(body, 8)))
    raise SexpError(f"unknown character name #\\{body}")


def _opaque_end(text: str, start: int) -> int:
    """Index just past the ``>`` closing the ``#<`` at ``start``; nested ``<...>`` count."""
    depth, i, n = 0, start + 1, len(text)
    while i < n:
        c = text[i]
        if c == "<":
            depth += 1
        elif c == ">":
            depth -= 1
            if depth == 0:
                return i + 1
        elif c == '"':
            m = _STRING.match(text, i)
            if m:
                i = m.end() - 1
        i += 1
    raise SexpError("unterminated #<...> object")


def _balanced_end(text: str, start: int) -> int:
    """Index just past the parenthesis closing the one that ends at ``start``."""
    depth, i = 1, start
    while depth:
        m = _TOKEN.match(text, i)
        if not m:
            raise SexpError("unterminated uniform vector")
        kind = m.lastgroup
        if kind in ("open", "srfi4"):
            depth += 1
        elif kind == "close":
            depth -= 1
        i = m.end()
    return i


def _build_list(items: list[Any], tail: Any) -> Any:
    if isinstance(tail, list):
        return items + tail
    for item in reversed(items):
        tail = Pair(item, tail)
    return tail


def _flat_numbers(text: str) -> list[int | float] | None:
    """A list of plain integers and decimals, the common shape of dist_map results,
    read without the tokenizer; None for anything else (``-``, ``1e``, ``1.2.3`` are
    symbols, and make ``int``/``float`` refuse)."""
    if len(text) < 3 or text[0] != "(" or text[-1] != ")":
        return None
    inner = text[1:-1]
    if not _FLAT_NUMBERS.fullmatch(inner):
        return None
    try:
        return [float(t) if ("." in t or "e" in t) else int(t) for t in inner.split(" ")]
    except ValueError:
        return None


_FLAT_STRINGS = re.compile(r'\("[^"\\]*"(?: "[^"\\]*")*\)')


def _flat_strings(text: str) -> list[str] | None:
    """A list of strings with no escapes in them, read without the tokenizer."""
    if not text.startswith('("') or not _FLAT_STRINGS.fullmatch(text):
        return None
    return text[2:-2].split('" "')


def read(text: str) -> Any:
    """The one datum ``text`` holds, as a Python value; ``SexpError`` if it holds another thing."""
    flat = _flat_numbers(text)
    if flat is None:
        flat = _flat_strings(text)
    if flat is not None:
        return flat
    # Each frame: [kind, items, dotted-tail-pending, tail, pending-quote-count]
    stack: list[list[Any]] = []
    quotes: list[str] = []
    result: list[Any] = []
    pos = 0

    def emit(value: Any) -> None:
        while quotes and (not stack or stack[-1][4] < len(quotes)):
            value = [Symbol(_QUOTE_NAMES[quotes.pop()]), value]
        if stack:
            frame = stack[-1]
            if frame[2] == 1:
                frame[3], frame[2] = value, 2
            elif frame[2] == 2:
                raise SexpError("more than one datum after '.'")
            else:
                frame[1].append(value)
        else:
            result.append(value)

    while True:
        m = _TOKEN.match(text, pos)
        if not m:
            if text[pos:].strip():
                raise SexpError(f"cannot read {text[pos : pos + 20]!r}")
            break
        pos = m.end()
        kind = m.lastgroup
        tok = m.group(kind)
        if kind == "atom":
            if tok == "." and stack and stack[-1][0] == "(" and stack[-1][1]:
                stack[-1][2] = 1
                continue
            value = number(tok)
            emit(value if value is not None else Symbol(tok))
        elif kind == "open":
            stack.append([tok, [], 0, None, len(quotes)])
        elif kind == "close":
            if not stack:
                raise SexpError("unexpected )")
            frame = stack.pop()
            if frame[2] == 1:
                raise SexpError("no datum after '.'")
            if frame[0] in ("(", "["):
                value = _build_list(frame[1], frame[3]) if frame[2] else frame[1]
            elif frame[0] == "#(":
                value = tuple(frame[1])
            else:
                value = bytes(frame[1])
            emit(value)
        elif kind == "string":
            emit(_unescape(tok[1:-1]))
        elif kind == "char":
            emit(_char(tok))
        elif kind == "hash":
            if tok.startswith("#:"):
                emit(Keyword(tok[2:]))
            else:
                emit({"#t": True, "#true": True, "#f": False, "#false": False, "#nil": None}[tok])
        elif kind == "barsym":
            emit(Symbol(_BAR_ESCAPE.sub(lambda b: chr(int(b.group(1), 16)), tok[2:-2])))
        elif kind == "quote":
            quotes.append(tok)
            continue
        elif kind == "opaque":
            end = _opaque_end(text, m.start(kind))
            emit(Opaque(text[m.start(kind) : end]))
            pos = end
        elif kind == "srfi4":
            end = _balanced_end(text, pos)
            emit(Opaque(text[m.start(kind) : end]))
            pos = end
        if not stack and result and not quotes:
            if text[pos:].strip():
                raise SexpError(f"more than one datum in {text[:40]!r}")
            return result[0]
    if stack or quotes:
        raise SexpError("the datum is not complete")
    raise SexpError("no datum in the text")


_QUOTE_NAMES = {"'": "quote", "`": "quasiquote", ",": "unquote", ",@": "unquote-splicing"}


def read_value(text: str) -> Any:
    """``read``, except that text it cannot read becomes ``Opaque``: a REPL value never fails."""
    try:
        return read(text)
    except (SexpError, ValueError, OverflowError):
        return Opaque(text)
