"""Lists of ordinary data as columns of bytes: a map job's data and its results.

The Scheme text path (``sexp.write`` / ``sexp.read``) carries every datum, but one
character at a time in Python.  This codec carries the common shapes, a list of atoms or
of flat lists and vectors of atoms, with a few C-speed operations per list: strings
travel as one UTF-8 blob, numbers as int64 and double arrays, the kinds of atoms as one
byte each.  Guile's side is ``pack-list`` / ``unpack-list`` in rrepl.scm, whose
protocol comment gives the layout.  A list of any other shape (deeper lists, pairs,
integers beyond 64 bits, rationals, bytevectors...) keeps the text path, so values are
the same either way.
"""

from __future__ import annotations

import gc
import math
import struct
import sys
import threading
from array import array
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import accumulate, chain, compress, islice, repeat
from operator import sub
from typing import Any

from .sexp import Char, Keyword, Symbol, write

# An atom's kind, one byte: which column holds it (or, for the last three, what it is).
INT, FLOAT, STRING, SYMBOL, KEYWORD, CHAR, TRUE, FALSE, NIL = range(9)
TEXT_TAGS = frozenset((STRING, SYMBOL, KEYWORD, CHAR))

HEADER = ("items", "atoms", "shapes", "tags", "ints", "floats", "texts", "lengths", "bytes")
"""The header's int64 fields, in order: see rrepl.scm."""

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


class PackingError(ValueError):
    """Packed bytes that do not add up: a broken or foreign sender."""


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
        size = _container(self.shapes[0])[1] if self.shapes else 1
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
    shapes, atoms = _flattened(items)
    tags, ints, floats, texts = _columns(atoms)
    return _Columns(len(items), len(atoms), shapes, tags, ints, floats, texts)


def _flattened(items: Sequence[Any]) -> tuple[array, list[Any]]:
    """The items' shapes (none when all are atoms, one when all share it) and the
    atoms, those of flat containers in place."""
    kinds = set(map(type, items))
    if kinds.isdisjoint(_CONTAINERS):
        return array("q"), list(items)
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


def _columns(atoms: list[Any]) -> tuple[bytes, array, array, list[str]]:
    """The atoms' tags (one byte when they are all of one kind) and their columns."""
    kinds = set(map(type, atoms))
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


def unpack(data: bytes) -> list[Any]:
    """The list ``pack`` (or Guile's ``pack-list``) made; ``PackingError`` if the
    bytes do not add up."""
    view = memoryview(data)
    if len(view) < 8 * len(HEADER):
        raise PackingError(f"{len(view)} bytes are too few for a header")
    fields = dict(zip(HEADER, _numbers("q", view[: 8 * len(HEADER)]), strict=True))
    _check_header(fields, len(view))
    at = 8 * len(HEADER)
    columns = {}
    for name, code in (("shapes", "q"), ("ints", "q"), ("floats", "d"), ("lengths", "q")):
        columns[name] = _numbers(code, view[at : at + 8 * fields[name]])
        at += 8 * fields[name]
    tags = bytes(view[at : at + fields["tags"]])
    at += fields["tags"]
    try:
        text = str(view[at:], "utf-8")
    except UnicodeDecodeError as e:
        raise PackingError(f"the text is not UTF-8: {e}") from None
    texts = _split(text, fields["texts"], columns["lengths"])
    atoms = _atoms(tags, fields["atoms"], columns["ints"].tolist(), columns["floats"], texts)
    return _shaped(atoms, columns["shapes"], fields["items"])


def _numbers(code: str, view: memoryview) -> array:
    numbers = array(code)
    numbers.frombytes(view)
    if sys.byteorder == "big":
        numbers.byteswap()
    return numbers


def _check_header(fields: dict[str, int], size: int) -> None:
    if min(fields.values()) < 0:
        raise PackingError(f"a count is negative: {fields}")
    items, atoms = fields["items"], fields["atoms"]
    if fields["shapes"] not in (0, 1, items) or (fields["shapes"] == 0 and atoms != items):
        raise PackingError(f"{fields['shapes']} shapes for {items} items of {atoms} atoms")
    if fields["tags"] not in ({0} if atoms == 0 else {1, atoms}):
        raise PackingError(f"{fields['tags']} tags for {atoms} atoms")
    if fields["lengths"] not in (0, fields["texts"]):
        raise PackingError(f"{fields['lengths']} lengths for {fields['texts']} texts")
    words = sum(fields[name] for name in ("shapes", "ints", "floats", "lengths"))
    expected = 8 * (len(HEADER) + words) + fields["tags"] + fields["bytes"]
    if expected != size:
        raise PackingError(f"the header counts {expected} bytes, not {size}")


def _split(text: str, count: int, lengths: array) -> list[str]:
    if count == 0:
        if text:
            raise PackingError("text but no texts")
        return []
    if not lengths:
        texts = text.split("\0")
    else:
        ends = list(accumulate(lengths))
        if ends[-1] != len(text) or min(lengths) < 0:
            raise PackingError(f"the lengths add up to {ends[-1]} characters, not {len(text)}")
        texts = list(map(text.__getitem__, map(slice, chain((0,), ends), ends)))
    if len(texts) != count:
        raise PackingError(f"{len(texts)} texts, not {count}")
    return texts


def _atoms(tags: bytes, count: int, ints: list[int], floats: array, texts: list[str]) -> list:
    """The atoms in order: each tag takes the next value of its column."""
    if len(tags) == 1:
        per_tag = [count if tag == tags[0] else 0 for tag in range(9)]
    else:
        per_tag = [tags.count(tag) for tag in range(9)]
    wanted = (per_tag[INT], per_tag[FLOAT], sum(per_tag[tag] for tag in TEXT_TAGS))
    if sum(per_tag) != count or wanted != (len(ints), len(floats), len(texts)):
        raise PackingError(
            f"tags for {wanted} ints, floats and texts and {count - sum(per_tag)} unknown, "
            f"columns of {(len(ints), len(floats), len(texts))}"
        )
    if len(tags) == 1:
        return _one_kind(tags[0], count, ints, floats, texts)
    shared = iter(texts)  # every kind of text takes the next one
    columns = [
        iter(ints),
        iter(floats.tolist()),
        shared,
        map(Symbol, shared),
        map(Keyword, shared),
        map(_char, shared),
        repeat(True),
        repeat(False),
        repeat(None),
    ]
    return list(map(next, map(columns.__getitem__, tags)))


def _one_kind(tag: int, count: int, ints: list[int], floats: array, texts: list[str]) -> list:
    if tag == INT:
        return ints
    if tag == FLOAT:
        return floats.tolist()
    if tag == STRING:
        return texts
    if tag in (SYMBOL, KEYWORD, CHAR):
        return list(map({SYMBOL: Symbol, KEYWORD: Keyword, CHAR: _char}[tag], texts))
    return [{TRUE: True, FALSE: False, NIL: None}[tag]] * count


def _char(text: str) -> Char:
    if len(text) != 1:
        raise PackingError(f"a character of {len(text)} characters: {text[:20]!r}")
    return Char(text)


def _shaped(atoms: list[Any], shapes: array, count: int) -> list[Any]:
    """The items: atoms, or lists and vectors of the atoms that follow."""
    if not shapes:
        return atoms
    if len(shapes) == 1:  # all of one shape: pairs...
        make, size = _container(shapes[0])
        if size * count != len(atoms):
            raise PackingError(f"{count} items of {size} atoms, not {len(atoms)}")
        with _collector_paused():
            if size == 0:
                return [make() for _ in range(count)]
            return list(map(make, zip(*[iter(atoms)] * size, strict=True)))
    sizes = [1 if s == ATOM else s if s >= 0 else -2 - s for s in shapes]
    if sum(sizes) != len(atoms) or min(sizes) < 0:
        raise PackingError(f"shapes for {sum(sizes)} atoms, not {len(atoms)}")
    rest = iter(atoms)
    with _collector_paused():
        return [
            next(rest) if shape == ATOM else (list if shape >= 0 else tuple)(islice(rest, size))
            for shape, size in zip(shapes, sizes, strict=True)
        ]


def _container(shape: int) -> tuple[type, int]:
    if shape == ATOM:  # all atoms have no shapes
        raise PackingError("one shape for all items, and not a container's")
    return (list, shape) if shape >= 0 else (tuple, -2 - shape)


_pauses = 0
_pauses_lock = threading.Lock()
_collector_was_enabled = False


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cycle collector off while a list of many new containers is made: they
    count as allocations, and 100,000 pairs set off collections of the whole heap,
    which took longer than the rest of the call.  The containers hold no cycles."""
    global _pauses, _collector_was_enabled
    with _pauses_lock:
        if _pauses == 0:
            _collector_was_enabled = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _pauses_lock:
            _pauses -= 1
            if _pauses == 0 and _collector_was_enabled:
                gc.enable()


def preview(items: list[Any], limit: int = 200) -> str:
    """The Scheme text of a packed list's first items, up to about ``limit``
    characters: what a packed value shows in place of Guile's own text."""
    parts, length = [], 0
    for item in items:
        if length > limit:
            parts.append("...")
            break
        text = write(item)
        parts.append(text)
        length += len(text) + 1
    return "(" + " ".join(parts) + ")"
