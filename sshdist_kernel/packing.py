"""Lists of ordinary data as columns of bytes: a map job's data and its results, packed.

The Scheme text path (``sexp.write`` / ``sexp.read``) carries every datum, but one
character at a time in Python.  This codec carries the common shapes, a list of atoms or
of flat lists and vectors of atoms, with a few C-speed operations per list: strings
travel as one UTF-8 blob, numbers as int64 and double arrays, the kinds of atoms as one
byte each.  ``unpacking`` reads them back; Guile's side is ``pack-list`` and
``unpack-list`` in ``(sshdist packing)``, whose comment gives the layout.  A list of any
other shape (deeper lists, pairs, integers beyond 64 bits, rationals, bytevectors...)
keeps the text path, so values are the same either way.
"""

from __future__ import annotations

import math
import struct
import sys
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import chain, compress, repeat
from operator import sub
from typing import Any

from .sexp import Char, Keyword, Symbol

# An atom's kind, one byte: which column holds it (or, for the last three, what it is).
INT, FLOAT, STRING, SYMBOL, KEYWORD, CHAR, TRUE, FALSE, NIL = range(9)
TEXT_TAGS = frozenset((STRING, SYMBOL, KEYWORD, CHAR))

HEADER = ("items", "atoms", "shapes", "tags", "ints", "floats", "texts", "lengths", "bytes")
"""The header's int64 fields, in order: see ``(sshdist packing)``."""

ATOM = -1
"""An item's shape when it is an atom; a list of n atoms is n, a vector of n is -2 - n."""

_TAG_OF_TYPE = {
    int: INT,
    float: FLOAT,
    str: STRING,
    Symbol: SYMBOL,
    Keyword: KEYWORD,
    Char: CHAR,
    bool: TRUE,  # FALSE for False, set after
    type(None): NIL,
}
_CONTAINERS = {list: 0, tuple: -2}  # a container's shape is its length plus this, or minus
_NAN = struct.unpack("<d", b"\x00\x00\x00\x00\x00\x00\xf8\x7f")[0]
"""The NaN the text path gives, either way: Guile writes every NaN as +nan.0 and reads
that as this one, 0x7ff8000000000000, as Python does."""


class _NotPacked(Exception):
    """The list has a shape this codec does not carry: the text path does."""


def pack(items: Sequence[Any]) -> bytes | None:
    """``items`` packed, or None when one of them is of a shape the text path carries:
    then ``sexp.write`` also gives any error a bad value deserves."""
    try:
        return _columns_of(items).tobytes()
    except _NotPacked:
        return None


class PackedList(Sequence):
    """A map call's data, packed once for the whole call, which also checks it.  The
    call's chunks are slices: when all items have one shape (strings, pairs of
    numbers, a mixed list of atoms...), a slice cuts the columns instead of packing
    its items again.  Indexing and iteration give the items."""

    __slots__ = ("_items", "_columns", "nbytes")

    def __init__(self, items: list[Any], columns: _Columns | None) -> None:
        self._items = items
        self._columns = columns
        self.nbytes: int | None = None  # the packed size, known for the whole list

    @classmethod
    def of(cls, items: list[Any]) -> PackedList | None:
        """``items`` packed, or None as for ``pack``."""
        try:
            packed = cls(items, _columns_of(items))
            packed.nbytes = len(packed.tobytes())  # the texts' UTF-8 checked too
        except _NotPacked:
            return None
        return packed

    def tobytes(self) -> bytes:
        """The packed bytes, as ``pack`` gives them (made anew each time: a chunk kept
        for a retry does not keep its bytes too)."""
        return (self._columns or _columns_of(self._items)).tobytes()

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._items)

    def __getitem__(self, index: Any) -> Any:
        if not isinstance(index, slice):
            return self._items[index]
        start, stop, step = index.indices(len(self._items))
        if step != 1:
            return self._items[index]
        cut = self._columns and self._columns.cut(start, stop)
        return PackedList(self._items[start:stop], cut or None)

    def __repr__(self) -> str:
        return f"PackedList({self._items!r})"


@dataclass(frozen=True)
class _Columns:
    """A list as the columns of its packed bytes."""

    count: int
    atoms: int
    shapes: array
    tags: bytes
    ints: array
    floats: array
    texts: list[Any]

    def tobytes(self) -> bytes:
        lengths, blob = _text(self.texts)
        header = array(
            "q",
            [self.count, self.atoms, len(self.shapes), len(self.tags), len(self.ints)]
            + [len(self.floats), len(self.texts), len(lengths), len(blob)],
        )
        return b"".join(
            [_little(header), _little(self.shapes), _little(self.ints), _little(self.floats)]
            + [_little(lengths), self.tags, blob]
        )

    def cut(self, start: int, stop: int) -> _Columns | None:
        """The columns of items ``start`` to ``stop`` when all items have one shape, so
        that the atoms are cut in one place, and each column in one place too (found
        by counting tags); else None."""
        if len(self.shapes) > 1 or stop <= start:
            return None
        shape = container(self.shapes[0]) if self.shapes else None
        size = shape[1] if shape else 1
        first, last = start * size, stop * size
        if len(self.tags) <= 1:
            tags, columns = self.tags, [(first, last)] * 3
        else:
            tags = self.tags[first:last]
            if tags.count(tags[0]) == len(tags):
                tags = tags[:1]
            columns = [_place(self.tags, kinds, first, last) for kinds in _COLUMN_TAGS]
        (i, j), (f, g), (t, u) = columns
        return _Columns(
            stop - start,
            last - first,
            self.shapes,
            tags,
            self.ints[i:j],
            self.floats[f:g],
            self.texts[t:u],
        )


_COLUMN_TAGS = ((INT,), (FLOAT,), tuple(TEXT_TAGS))


def _place(tags: bytes, kinds: tuple[int, ...], first: int, last: int) -> tuple[int, int]:
    """Where the atoms ``first`` to ``last`` of the given tags are in their column."""
    start = sum(tags.count(kind, 0, first) for kind in kinds)
    return start, start + sum(tags.count(kind, first, last) for kind in kinds)


def _columns_of(items: Sequence[Any]) -> _Columns:
    kinds = set(map(type, items))
    if kinds.isdisjoint(_CONTAINERS):  # all atoms: their kinds are known already
        shapes, atoms = array("q"), list(items)
    else:
        shapes, atoms = _flattened(items, kinds)
        kinds = set(map(type, atoms))
    tags, ints, floats, texts = _columns(atoms, kinds)
    return _Columns(len(items), len(atoms), shapes, tags, ints, floats, texts)


def _flattened(items: Sequence[Any], kinds: set[type]) -> tuple[array, list[Any]]:
    """The shapes of items of these ``kinds``, some of them containers (one shape when
    all share it), and the atoms, those of the containers in place."""
    if len(kinds) == 1:
        shift = _CONTAINERS[kinds.pop()]
        sizes = set(map(len, items))
        if len(sizes) == 1:
            shapes = array("q", [_shape(shift, sizes.pop())])
        else:
            lengths = map(len, items)
            shapes = array("q", lengths if shift == 0 else map(sub, repeat(shift), lengths))
        return shapes, list(chain.from_iterable(items))
    shapes, atoms = array("q"), []
    for item in items:  # atoms and containers mixed: rare enough for a loop
        shift = _CONTAINERS.get(type(item))
        if shift is None:
            shapes.append(ATOM)
            atoms.append(item)
        else:
            shapes.append(_shape(shift, len(item)))
            atoms.extend(item)
    if shapes.count(shapes[0]) == len(shapes):
        del shapes[1:]
    return shapes, atoms


def _shape(shift: int, size: int) -> int:
    return size if shift == 0 else shift - size


def _columns(atoms: list[Any], kinds: set[type]) -> tuple[bytes, array, array, list[str]]:
    """The tags of atoms of these ``kinds`` (one byte when they are all of one kind)
    and their columns."""
    if not kinds <= _TAG_OF_TYPE.keys():
        raise _NotPacked
    ints, floats, texts = array("q"), array("d"), []
    if kinds == {int}:
        ints = _ints(atoms)
        return bytes([INT]), ints, floats, texts
    if kinds == {float}:
        return bytes([FLOAT]), ints, doubles(atoms), texts
    only = _TAG_OF_TYPE[next(iter(kinds))] if len(kinds) == 1 else None
    if only in TEXT_TAGS:
        return bytes([only]), ints, floats, _texts(atoms, kinds)
    tags = bytearray(map(_TAG_OF_TYPE.__getitem__, map(type, atoms)))
    if bool in kinds:
        start = tags.find(TRUE)
        while start >= 0:
            if atoms[start] is False:
                tags[start] = FALSE
            start = tags.find(TRUE, start + 1)
    if int in kinds:
        ints = _ints(compress(atoms, map(INT.__eq__, tags)))
    if float in kinds:
        floats = doubles(compress(atoms, map(FLOAT.__eq__, tags)))
    if not kinds.isdisjoint((str, Symbol, Keyword, Char)):
        texts = _texts(list(compress(atoms, map(TEXT_TAGS.__contains__, tags))), kinds)
    if tags and tags.count(tags[0]) == len(tags):
        tags = tags[:1]
    return bytes(tags), ints, floats, texts


def _ints(values: Any) -> array:
    try:
        return array("q", values)
    except OverflowError:  # beyond 64 bits: the text path has no limit
        raise _NotPacked from None


def doubles(values: Any) -> array:
    """``array('d', values)``, every NaN the one the text path gives."""
    floats = array("d", values)
    if not math.isfinite(sum(floats)) and any(map(math.isnan, floats)):
        floats = array("d", [_NAN if x != x else x for x in floats])
    return floats


def _texts(values: list[Any], kinds: set[type]) -> list[Any]:
    if Char in kinds and any(len(c) != 1 for c in values if type(c) is Char):
        raise _NotPacked  # sexp.write says what is wrong with it
    return values


def _text(texts: list[str]) -> tuple[array, bytes]:
    """The texts as UTF-8, separated by NUL when none holds one, else one after the
    other with their lengths in characters."""
    if not texts:
        return array("q"), b""
    joined = "\0".join(texts)
    lengths = array("q")
    if joined.count("\0") != len(texts) - 1:
        lengths = array("q", map(len, texts))
        joined = "".join(texts)
    try:
        return lengths, joined.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: sexp.write says so
        raise _NotPacked from None


def _little(numbers: array) -> bytes:
    if sys.byteorder == "big":
        numbers = array(numbers.typecode, numbers)
        numbers.byteswap()
    return numbers.tobytes()


def container(shape: int) -> tuple[type, int] | None:
    """The type and size of a container's shape; None for an atom's."""
    if shape == ATOM:
        return None
    return (list, shape) if shape >= 0 else (tuple, -2 - shape)
