"""The packed data path in Python alone: what it carries comes back exactly, what it
does not is left to the text path, and bytes that do not add up are refused."""

from __future__ import annotations

import math
import struct
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from sshdist_kernel import Char, Keyword, Node, NodeError, Pair, Symbol, make_job, sexp
from sshdist_kernel.job import job_request, split
from sshdist_kernel.packing import HEADER, PackedList, pack
from sshdist_kernel.replchannel import _unpack_value
from sshdist_kernel.sexp import SexpError
from sshdist_kernel.unpacking import PackingError, preview, unpack

# What the packed path carries: atoms, and flat lists and vectors (tuples) of atoms.
atoms = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(),  # NaN of any sign and payload, inf, -0.0
    st.text(),
    st.text().map(Symbol),
    st.from_regex(r"[a-z][a-z0-9-]*", fullmatch=True).map(Keyword),
    st.characters(exclude_categories=["Cs"]).map(Char),
    st.booleans(),
    st.none(),
)
items = st.one_of(
    atoms,
    st.lists(atoms, max_size=4),
    st.lists(atoms, max_size=4).map(tuple),
)
packable = st.one_of(
    st.lists(items, max_size=12),
    st.lists(st.lists(atoms, min_size=2, max_size=2), max_size=8),  # one shape for all
    st.lists(st.text(), max_size=8),  # one kind of atom
)


def same(a: Any, b: Any) -> bool:
    """Equal, of the same types all the way down, and floats bit for bit (NaN too)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return struct.pack("<d", a) == struct.pack("<d", b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def text_path(value: list[Any]) -> Any:
    """What the Scheme text of ``value`` reads back as, in Python."""
    return sexp.read(sexp.write(value))


CANONICAL_NAN = struct.unpack("<d", struct.pack("<Q", 0x7FF8000000000000))[0]


@given(packable)
@example(["", "\0", "a\0b", '"', "\\", "\n", "\U0001f600", "é"])
@example([[0, 1], [2, 3]])
@example([(), [], ("a", 1, 2.5), [True, False, None]])
@example([-0.0, math.inf, -math.inf, -math.nan, 1e300, 5e-324])
@example([2**63 - 1, -(2**63), True, 1, False, 0])
def test_packed_lists_come_back_as_the_text_path_gives_them(value: list[Any]) -> None:
    packed = pack(value)
    assert packed is not None
    assert same(unpack(packed), text_path(value))


@given(packable)
def test_packing_is_canonical(value: list[Any]) -> None:
    """The same value always packs to the same bytes, so Guile's bytes can be compared."""
    packed = pack(value)
    assert packed is not None
    assert pack(unpack(packed)) == packed


def test_every_nan_is_the_one_the_text_path_gives() -> None:
    weird = struct.unpack("<d", struct.pack("<Q", 0xFFF8000000000123))[0]
    for value in ([weird], [weird, "a"], [[weird, 1]]):
        back = unpack(pack(value))
        first = back[0][0] if isinstance(back[0], list) else back[0]
        assert struct.pack("<d", first) == struct.pack("<d", CANONICAL_NAN)


@pytest.mark.parametrize(
    "value",
    [
        [2**63],  # beyond 64 bits
        ["a", -(2**63) - 1],
        [Fraction(1, 3)],
        [1j],
        [b"bytes"],
        [[[1]]],  # nested deeper than one level
        [[1, [2]], 3],
        [Pair(1, 2)],
        ["\ud800"],  # a lone surrogate
        [Symbol("\udfff")],
        [Char("ab")],
        [sexp.Opaque("#<procedure>")],
        [object()],
    ],
)
def test_shapes_the_text_path_carries_are_not_packed(value: list[Any]) -> None:
    assert pack(value) is None


def test_int_subclasses_and_str_subclasses_keep_the_text_path() -> None:
    class Name(str):
        pass

    class Count(int):
        pass

    assert pack([Name("x")]) is None
    assert pack([Count(3)]) is None


def test_a_list_that_contains_itself_is_not_packed() -> None:
    loop: list[Any] = [1]
    loop.append(loop)
    assert pack([loop]) is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (["ok", "\ud800"], r"U\+D800 is a lone surrogate"),
        ([Char("ab")], "a Char holds one character"),
        ([["a", {1}]], "a Python set has no Scheme datum"),
    ],
)
def test_bad_data_gives_the_text_paths_error(data: list[Any], message: str) -> None:
    job = make_job("map", object.__new__(Node), data, "identity")
    with pytest.raises(SexpError, match=message):
        job_request(job)
    with pytest.raises(SexpError, match=message):
        sexp.write(data)


def test_a_map_job_sends_its_data_packed() -> None:
    job = make_job("map", object.__new__(Node), ["a", "b"], "string-upcase")
    source, attachment = job_request(job)
    assert "attachment-list) (quote pack))" in source
    assert attachment == pack(["a", "b"])
    source, attachment = job_request(make_job("map", object.__new__(Node), [[[1]]], "car"))
    assert attachment is None and "(quote (((1))))" in source


def _header(packed: bytes) -> dict[str, int]:
    fields = struct.unpack(f"<{len(HEADER)}q", packed[: 8 * len(HEADER)])
    return dict(zip(HEADER, fields, strict=True))


def _with_header(packed: bytes, **fields: int) -> bytes:
    header = {**_header(packed), **fields}
    return struct.pack(f"<{len(HEADER)}q", *header.values()) + packed[8 * len(HEADER) :]


TAGS = 8 * (len(HEADER) + 1)  # where the tags of [1, "two", "three"] begin, after its int


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (lambda p: p[:20], "too few for a header"),
        (lambda p: p[:-1], "the header counts"),
        (lambda p: p + b"x", "the header counts"),
        (lambda p: _with_header(p, items=5), "shapes for 5 items"),
        (lambda p: _with_header(p, tags=2), "2 tags for 3 atoms"),
        (lambda p: _with_header(p, ints=-1), "negative"),
        (lambda p: p[:-6] + b"\xff" + p[-5:], "not UTF-8"),
        (lambda p: p[:TAGS] + b"\x09" + p[TAGS + 1 :], "1 unknown"),
    ],
)
def test_bytes_that_do_not_add_up_are_refused(bad: Any, message: str) -> None:
    packed = pack([1, "two", "three"])
    assert packed is not None and unpack(packed) == [1, "two", "three"]
    with pytest.raises(PackingError, match=message):
        unpack(bad(packed))


def test_a_b_record_of_a_packed_list() -> None:
    packed = pack(["a", [1, 2.5]])
    assert packed is not None
    num, text, value = _unpack_value(b"7\npack\n" + packed)
    assert (num, text, value) == (7, '("a" (1 2.5))', ["a", [1, 2.5]])
    with pytest.raises(NodeError, match="does not add up"):
        _unpack_value(b"0\npack\n" + packed[:-1])
    num, text, value = _unpack_value(b"3\ns64\n" + struct.pack("<2q", 5, -6))
    assert (num, text, value) == (3, "#<2 s64 integers>", [5, -6])


def test_a_preview_stops_after_about_200_characters() -> None:
    assert preview(["x" * 150, "y" * 150, "z"]) == '("' + "x" * 150 + '" "' + "y" * 150 + '" ...)'
    assert preview([]) == "()"


@given(packable, st.integers(min_value=0, max_value=14), st.integers(min_value=0, max_value=14))
@example(["a", "b\0", "c"], 0, 1)  # a slice with no NUL in its texts: separated again
@example([[1, 2], [3, 4], [5, 6]], 1, 3)
def test_a_slice_of_a_packed_list_packs_as_the_slice_would(
    value: list[Any], start: int, stop: int
) -> None:
    whole = PackedList.of(value)
    assert whole is not None and whole.tobytes() == pack(value)
    part = whole[start:stop]
    assert isinstance(part, PackedList) and list(part) == value[start:stop]
    assert len(part) == len(value[start:stop]) and part.tobytes() == pack(value[start:stop])


def test_split_keeps_a_packed_list_packed() -> None:
    whole = PackedList.of([str(i) for i in range(7)])
    assert whole is not None
    chunks = split(whole, 3)
    assert all(isinstance(c, PackedList) for c in chunks)
    assert [list(c) for c in chunks] == split([str(i) for i in range(7)], 3)
    assert PackedList.of([[[1]]]) is None and PackedList.of(["\ud800"]) is None
