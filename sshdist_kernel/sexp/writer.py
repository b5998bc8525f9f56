"""Python values to Scheme text that Guile reads back as the same datum."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

from .data import (
    CHAR_WRITE,
    MAX_DEPTH,
    Char,
    Keyword,
    Opaque,
    Pair,
    SexpError,
    Symbol,
    fraction_text,
    int_text,
    number,
)

_STRING_WRITE = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\\": "\\\\", '"': '\\"'}


_PLAIN_SYMBOL = re.compile(r"[^\s()\[\]{}\";'`,|#\d.+-][^\s()\[\]{}\";'`,|]*\Z|[+-]\Z|\.\.\.\Z")


def _write_symbol(name: str) -> str:
    if _PLAIN_SYMBOL.match(name) and number(name) is None:
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
    if s.isascii() and s.isprintable() and '"' not in s and "\\" not in s:
        return '"' + s + '"'
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
    if c in CHAR_WRITE:
        return "#\\" + CHAR_WRITE[c]
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
    """The Scheme text of ``value``, such that Guile's ``read`` gives the same datum back.
    ``SexpError`` for a value with no datum, one that contains itself, or one nested
    deeper than ``MAX_DEPTH`` levels."""
    if type(value) is list:  # dist_map's common data, a list of numbers, quickly
        if all(type(x) is int for x in value):
            try:
                return "(" + " ".join(map(str, value)) + ")"
            except ValueError:  # an integer past Python's digit limit: int_text below
                pass
        elif all(type(x) is float for x in value):
            text = " ".join(map(repr, value))
            if "n" not in text:  # no inf or nan, which Scheme spells otherwise
                return "(" + text + ")"
        elif all(type(x) is str for x in value):
            return "(" + " ".join(map(_write_string, value)) + ")"
    parts: list[str] = []
    _write_into(value, parts)
    return "".join(parts)


_CONTAINERS = (list, tuple, Pair)


def _write_into(value: Any, out: list[str]) -> None:
    # A stack of open containers instead of recursion: depth costs no Python stack, and
    # the containers open around a value are known, so one inside itself is caught.
    if not isinstance(value, _CONTAINERS):
        out.append(_atom(value))
        return
    frames: list[tuple[Iterator[Any], str, str]] = []  # (items left, separator, closer)
    open_ids: dict[int, None] = {}  # a set that pops in the order frames do
    _open(value, out, frames, open_ids)
    first = True
    while frames:
        items, separator, closer = frames[-1]
        for item in items:
            if not first:
                out.append(separator)
            if isinstance(item, _CONTAINERS):
                _open(item, out, frames, open_ids)
                first = True
                break
            first = False
            out.append(_atom(item))
        else:
            out.append(closer)
            frames.pop()
            open_ids.popitem()
            first = False


def _open(
    value: Any, out: list[str], frames: list[tuple[Iterator[Any], str, str]], open_ids: dict
) -> None:
    if id(value) in open_ids:
        raise SexpError(f"this {type(value).__name__} contains itself, so it has no Scheme datum")
    if len(frames) == MAX_DEPTH:
        raise SexpError(
            f"the data are nested deeper than {MAX_DEPTH} levels, more than Guile reads back safely"
        )
    if isinstance(value, Pair):
        out.append("(")
        frames.append((iter((value.car, value.cdr)), " . ", ")"))
    else:
        out.append("(" if isinstance(value, list) else "#(")
        frames.append((iter(value), " ", ")"))
    open_ids[id(value)] = None


def _atom(value: Any) -> str:
    # Order matters: bool is an int, Symbol/Keyword/Char are str.
    if value is True:
        return "#t"
    if value is False:
        return "#f"
    if value is None:
        return "#nil"
    if isinstance(value, int):
        return int_text(value)
    if isinstance(value, Fraction):
        return fraction_text(value)
    if isinstance(value, float):
        return _write_float(value)
    if isinstance(value, complex):
        imag = _write_float(value.imag)
        sign = "" if imag[0] in "+-" else "+"
        return f"{_write_float(value.real)}{sign}{imag}i"
    if isinstance(value, Symbol):
        return _write_symbol(value)
    if isinstance(value, Keyword):
        return "#:" + _write_symbol(value)
    if isinstance(value, Char):
        if len(value) != 1:
            raise SexpError(f"a Char holds one character, not {str(value)!r}")
        return _write_char(value)
    if isinstance(value, str):
        return _write_string(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "#vu8(" + " ".join(map(str, bytes(value))) + ")"
    if isinstance(value, Opaque):
        raise SexpError(f"{value.text} cannot be sent back to Guile: it has no readable form")
    raise SexpError(f"a Python {type(value).__name__} has no Scheme datum: {value!r}")


def quote(value: Any) -> str:
    """An expression that evaluates to ``value`` on the node: ``(quote DATUM)``."""
    return "(quote " + write(value) + ")"
