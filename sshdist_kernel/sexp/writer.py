"""Python values to Scheme text that Guile reads back as the same datum."""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Any

from .data import CHAR_WRITE, Char, Keyword, Opaque, Pair, SexpError, Symbol, number

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
    """The Scheme text of ``value``, such that Guile's ``read`` gives the same datum back."""
    if type(value) is list:  # dist_map's common data, a list of numbers, quickly
        if all(type(x) is int for x in value):
            return "(" + " ".join(map(str, value)) + ")"
        if all(type(x) is float for x in value):
            text = " ".join(map(repr, value))
            if "n" not in text:  # no inf or nan, which Scheme spells otherwise
                return "(" + text + ")"
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
