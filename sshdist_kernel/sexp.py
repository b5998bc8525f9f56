"""Guile's printed data to Python values and back: pure functions, no I/O.

Scheme to Python: integers to ``int``, rationals to ``Fraction``, reals to ``float``,
complex to ``complex``, strings to ``str``, characters to ``Char``, symbols to
``Symbol``, keywords to ``Keyword``, booleans to ``bool``, ``#nil`` to ``None``,
proper lists (``'()`` too) to ``list``, dotted pairs to ``Pair``, vectors to
``tuple``, bytevectors to ``bytes``.  Anything Guile prints but cannot read back
(``#<procedure ...>``, ``#<unspecified>``, SRFI-4 vectors) becomes ``Opaque``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any


class Symbol(str):
    """A Scheme symbol (``foo``), kept apart from strings."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Symbol({str.__repr__(self)})"


class Keyword(str):
    """A Scheme keyword (``#:foo``); the string is the name without ``#:``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Keyword({str.__repr__(self)})"


class Char(str):
    """A Scheme character (``#\\a``): a string of length one."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Char({str.__repr__(self)})"


@dataclass(frozen=True)
class Pair:
    """A pair whose cdr is not a list: ``(1 . 2)`` is ``Pair(1, 2)``,
    ``(1 2 . 3)`` is ``Pair(1, Pair(2, 3))``."""

    car: Any
    cdr: Any


@dataclass(frozen=True)
class Opaque:
    """A value Guile prints but cannot read back; ``text`` is what it printed."""

    text: str

    def __str__(self) -> str:
        return self.text


class SexpError(ValueError):
    """Text that is not a Scheme datum, or a Python value with no Scheme datum."""


_CHAR_NAMES = {
    "nul": "\0",
    "soh": "\x01",
    "stx": "\x02",
    "etx": "\x03",
    "eot": "\x04",
    "enq": "\x05",
    "ack": "\x06",
    "bel": "\x07",
    "alarm": "\x07",
    "bs": "\x08",
    "backspace": "\x08",
    "ht": "\t",
    "tab": "\t",
    "lf": "\n",
    "nl": "\n",
    "newline": "\n",
    "linefeed": "\n",
    "vt": "\x0b",
    "vtab": "\x0b",
    "ff": "\x0c",
    "np": "\x0c",
    "page": "\x0c",
    "cr": "\r",
    "return": "\r",
    "so": "\x0e",
    "si": "\x0f",
    "dle": "\x10",
    "dc1": "\x11",
    "dc2": "\x12",
    "dc3": "\x13",
    "dc4": "\x14",
    "nak": "\x15",
    "syn": "\x16",
    "etb": "\x17",
    "can": "\x18",
    "em": "\x19",
    "sub": "\x1a",
    "esc": "\x1b",
    "escape": "\x1b",
    "fs": "\x1c",
    "gs": "\x1d",
    "rs": "\x1e",
    "us": "\x1f",
    "sp": " ",
    "space": " ",
    "del": "\x7f",
    "delete": "\x7f",
}
_CHAR_WRITE = {
    "\0": "nul",
    "\x07": "alarm",
    "\x08": "backspace",
    "\t": "tab",
    "\n": "newline",
    "\x0b": "vtab",
    "\x0c": "page",
    "\r": "return",
    "\x1b": "esc",
    " ": "space",
    "\x7f": "delete",
}
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
_STRING_WRITE = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\\": "\\\\", '"': '\\"'}

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
    | (?P<atom>[^\s()\[\]";'`,]+)
    )""",
    re.VERBOSE | re.DOTALL,
)
_INT = re.compile(r"[+-]?\d+\Z")
_RATIONAL = re.compile(r"[+-]?\d+/\d+\Z")
_REAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\Z|[+-](?:inf|nan)\.0\Z")
_COMPLEX = re.compile(
    r"(?P<re>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-](?:inf|nan)\.0)?"
    r"(?P<im>[+-](?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|(?:inf|nan)\.0)?)i\Z"
)
_FLAT_INTS = re.compile(r"\((-?\d+(?: -?\d+)*)\)\Z")
_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{6}|\n[ \t]*|.)", re.DOTALL)
# Guile escapes only as \xHH; inside #{...}#, and writes "}" that way, so the first
# "}#" ends the symbol and any other backslash is itself (Guile prints `0\` as #{0\}#).
_BAR_ESCAPE = re.compile(r"\\x([0-9a-fA-F]+);")


def _real(text: str) -> float | int | Fraction:
    if _INT.match(text):
        return int(text)
    if _RATIONAL.match(text):
        return Fraction(text)
    return float(text.replace(".0", "", 1) if text[1:] in ("inf.0", "nan.0") else text)


def _number(text: str) -> Any:
    """The number ``text`` spells, or None when it spells none."""
    if _INT.match(text):
        return int(text)
    if _RATIONAL.match(text):
        return Fraction(text)
    if _REAL.match(text):
        return _real(text)
    m = _COMPLEX.match(text)
    if m:
        im = m["im"]
        im_value = float(im + "1") if im in "+-" else float(_real(im))
        return complex(float(_real(m["re"])) if m["re"] else 0.0, im_value)
    return None


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
    if body in _CHAR_NAMES:
        return Char(_CHAR_NAMES[body])
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
            m = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL).match(text, i)
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


def read(text: str) -> Any:
    """The one datum ``text`` holds, as a Python value; ``SexpError`` if it holds another thing."""
    flat = _FLAT_INTS.match(text)
    if flat:  # the common shape of dist_map results, read without the tokenizer
        return [int(x) for x in flat.group(1).split(" ")]
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
            number = _number(tok)
            emit(number if number is not None else Symbol(tok))
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


_PLAIN_SYMBOL = re.compile(r"[^\s()\[\]{}\";'`,|#\d.+-][^\s()\[\]{}\";'`,|]*\Z|[+-]\Z|\.\.\.\Z")


def _write_symbol(name: str) -> str:
    if _PLAIN_SYMBOL.match(name) and _number(name) is None:
        return name
    body = "".join(c if c.isprintable() and c not in " \\}#" else f"\\x{ord(c):x};" for c in name)
    return "#{" + body + "}#"


_SURROGATE = re.compile("[\ud800-\udfff]")


def _refuse_surrogates(s: str) -> None:
    m = _SURROGATE.search(s)
    if m:
        raise SexpError(
            f"U+{ord(m.group()):04X} is a lone surrogate, which no Scheme "
            "character can hold (decode the text with errors='replace')"
        )


def _write_string(s: str) -> str:
    _refuse_surrogates(s)
    out = []
    for c in s:
        e = _STRING_WRITE.get(c)
        if e is not None:
            out.append(e)
        elif c.isprintable():
            out.append(c)
        else:
            o = ord(c)
            out.append(
                f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:06x}"
            )
    return '"' + "".join(out) + '"'


def _write_char(c: str) -> str:
    _refuse_surrogates(c)
    if c in _CHAR_WRITE:
        return "#\\" + _CHAR_WRITE[c]
    if c.isprintable():
        return "#\\" + c
    return f"#\\x{ord(c):x}"


def _write_float(x: float) -> str:
    if math.isnan(x):
        return "+nan.0"
    if math.isinf(x):
        return "+inf.0" if x > 0 else "-inf.0"
    return repr(x)


def write(value: Any) -> str:
    """The Scheme text of ``value``, such that Guile's ``read`` gives the same datum back."""
    parts: list[str] = []
    _write_into(value, parts)
    return "".join(parts)


def _write_into(value: Any, out: list[str]) -> None:
    # Order matters: bool is an int, Symbol/Keyword/Char are str.
    if value is True:
        out.append("#t")
    elif value is False:
        out.append("#f")
    elif value is None:
        out.append("#nil")
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, Fraction):
        out.append(str(value.numerator) if value.denominator == 1 else str(value))
    elif isinstance(value, float):
        out.append(_write_float(value))
    elif isinstance(value, complex):
        imag = _write_float(value.imag)
        sign = "" if imag[0] in "+-" else "+"
        out.append(f"{_write_float(value.real)}{sign}{imag}i")
    elif isinstance(value, Symbol):
        out.append(_write_symbol(value))
    elif isinstance(value, Keyword):
        out.append("#:" + _write_symbol(value))
    elif isinstance(value, Char):
        if len(value) != 1:
            raise SexpError(f"a Char holds one character, not {str(value)!r}")
        out.append(_write_char(value))
    elif isinstance(value, str):
        out.append(_write_string(value))
    elif isinstance(value, (bytes, bytearray, memoryview)):
        out.append("#vu8(" + " ".join(map(str, bytes(value))) + ")")
    elif isinstance(value, (list, tuple)):
        out.append("(" if isinstance(value, list) else "#(")
        for i, item in enumerate(value):
            if i:
                out.append(" ")
            _write_into(item, out)
        out.append(")")
    elif isinstance(value, Pair):
        out.append("(")
        _write_into(value.car, out)
        out.append(" . ")
        _write_into(value.cdr, out)
        out.append(")")
    elif isinstance(value, Opaque):
        raise SexpError(f"{value.text} cannot be sent back to Guile: it has no readable form")
    else:
        raise SexpError(f"a Python {type(value).__name__} has no Scheme datum: {value!r}")


def quote(value: Any) -> str:
    """An expression that evaluates to ``value`` on the node: ``(quote DATUM)``."""
    return "(quote " + write(value) + ")"


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
