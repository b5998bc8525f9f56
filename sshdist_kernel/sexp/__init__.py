"""Guile's printed data to Python values and back: pure functions, no I/O.

Scheme to Python: integers to ``int``, rationals to ``Fraction``, reals to ``float``,
complex to ``complex``, strings to ``str``, characters to ``Char``, symbols to
``Symbol``, keywords to ``Keyword``, booleans to ``bool``, ``#nil`` to ``None``,
proper lists (``'()`` too) to ``list``, dotted pairs to ``Pair``, vectors to
``tuple``, bytevectors to ``bytes``.  Anything Guile prints but cannot read back
(``#<procedure ...>``, ``#<unspecified>``, SRFI-4 vectors) becomes ``Opaque``.
"""

from __future__ import annotations

from .data import Char, Keyword, Opaque, Pair, SexpError, Symbol
from .reader import read, read_value
from .source import clamped_cursor, datum_end, input_status, name_at, split_forms, word_at
from .writer import quote, write

__all__ = [
    "Char",
    "Keyword",
    "Opaque",
    "Pair",
    "SexpError",
    "Symbol",
    "clamped_cursor",
    "datum_end",
    "input_status",
    "name_at",
    "split_forms",
    "quote",
    "read",
    "read_value",
    "word_at",
    "write",
]
