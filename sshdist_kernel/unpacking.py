"""Packed lists read back (see ``packing``): a node's results, as the text path gives them.

Read with a few C-speed operations a list, as they are packed; only a list's flat
lists and tuples are made one by one, with the cycle collector paused (see
``_collector_paused``).  Bytes that do not add up raise ``PackingError``.
"""

from __future__ import annotations

import gc
import sys
import threading
from array import array
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import accumulate, chain, islice, repeat
from typing import Any

from .packing import (
    ATOM,
    CHAR,
    FALSE,
    FLOAT,
    HEADER,
    INT,
    KEYWORD,
    NIL,
    STRING,
    SYMBOL,
    TEXT_TAGS,
    TRUE,
    container,
)
from .sexp import Char, Keyword, Symbol, write


class PackingError(ValueError):
    """Packed bytes that do not add up: a broken or foreign sender."""


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
        shape = container(shapes[0])
        if shape is None:  # all atoms have no shapes
            raise PackingError("one shape for all items, and not a container's")
        make, size = shape
        if size * count != len(atoms):
            raise PackingError(f"{count} items of {size} atoms, not {len(atoms)}")
        with _collector_paused():
            if size == 0:
                return [make() for _ in range(count)]
            return list(map(make, zip(*[iter(atoms)] * size, strict=False)))  # sizes checked
    sizes = [1 if s == ATOM else s if s >= 0 else -2 - s for s in shapes]
    if sum(sizes) != len(atoms) or min(sizes) < 0:
        raise PackingError(f"shapes for {sum(sizes)} atoms, not {len(atoms)}")
    rest = iter(atoms)
    with _collector_paused():
        return [
            next(rest) if shape == ATOM else (list if shape >= 0 else tuple)(islice(rest, size))
            for shape, size in zip(shapes, sizes, strict=True)
        ]


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
