"""The Python types that stand for Scheme data, and what reader and writer share."""

from __future__ import annotations

import re
import sys
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


CHAR_NAMES = {
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
CHAR_WRITE = {
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
_INT = re.compile(r"[+-]?\d+\Z")
_RATIONAL = re.compile(r"([+-]?\d+)/(\d+)\Z")
_HEX = re.compile(r"#x([+-]?[0-9a-fA-F]+)(?:/([0-9a-fA-F]+))?\Z")
_REAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\Z|[+-](?:inf|nan)\.0\Z")
_COMPLEX = re.compile(
    r"(?P<re>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-](?:inf|nan)\.0)?"
    r"(?P<im>[+-](?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|(?:inf|nan)\.0)?)i\Z"
)

# Guile's reader crashes (SIGSEGV) on a quoted datum some 30,000 levels deep; data
# deeper than this is refused before it is sent.
MAX_DEPTH = 10_000


def decimal_int(text: str) -> int:
    """``int(text)`` for decimal digits of any length.  Python refuses to convert more
    than ``sys.get_int_max_str_digits()`` digits at once (4300 by default) and that
    setting is process-wide, so longer numbers are read in halves instead."""
    try:
        return int(text)
    except ValueError:
        pass
    sign, digits = (text[0], text[1:]) if text[0] in "+-" else ("", text)
    value = _int_in_halves(digits, sys.get_int_max_str_digits())
    return -value if sign == "-" else value


def _int_in_halves(digits: str, limit: int) -> int:
    if len(digits) <= limit:
        return int(digits)
    low = len(digits) // 2
    return _int_in_halves(digits[:-low], limit) * 10**low + _int_in_halves(digits[-low:], limit)


def int_text(n: int) -> str:
    """The Scheme text of ``n``: decimal, or ``#x`` hexadecimal past Python's digit limit
    (hexadecimal has no limit and takes linear time; Guile reads both)."""
    try:
        return int.__repr__(n)  # int's own text, even for IntEnum and other subclasses
    except ValueError:
        return f"#x{n:x}"


def fraction_text(f: Fraction) -> str:
    """``n/d``, or both parts in hexadecimal when either is past the digit limit."""
    n, d = f.numerator, f.denominator
    if d == 1:
        return int_text(n)
    try:
        return f"{int.__repr__(n)}/{int.__repr__(d)}"
    except ValueError:
        return f"#x{n:x}/{d:x}"


def _fraction(n: int, d: int) -> Fraction | None:
    return Fraction(n, d) if d else None  # Guile reads 1/0 as a symbol


def _real(text: str) -> float | int | Fraction | None:
    if _INT.match(text):
        return decimal_int(text)
    m = _RATIONAL.match(text)
    if m:
        return _fraction(decimal_int(m[1]), decimal_int(m[2]))
    return float(text.replace(".0", "", 1) if text[1:] in ("inf.0", "nan.0") else text)


def number(text: str) -> Any:
    """The number ``text`` spells, or None when it spells none."""
    if _INT.match(text):
        return decimal_int(text)
    m = _RATIONAL.match(text)
    if m:
        return _fraction(decimal_int(m[1]), decimal_int(m[2]))
    if _REAL.match(text):
        return _real(text)
    m = _COMPLEX.match(text)
    if m:
        im = m["im"]
        im_value = float(im + "1") if im in "+-" else float(_real(im))
        return complex(float(_real(m["re"])) if m["re"] else 0.0, im_value)
    if text.startswith("#x"):  # only ever written by int_text and fraction_text
        m = _HEX.match(text)
        if m:
            n = int(m[1], 16)
            return n if m[2] is None else _fraction(n, int(m[2], 16))
    return None
