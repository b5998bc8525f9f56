"""Guile's printed data to Python and back, as pure functions (no Guile here;
round trips through real Guile are in test_sexp_guile.py)."""

from __future__ import annotations

import enum
import math
import sys
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sshdist_kernel import sexp
from sshdist_kernel.sexp import Char, Keyword, Opaque, Pair, Symbol


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("3", 3),
        ("-17", -17),
        ("1267650600228229401496703205376", 2**100),
        ("1/3", Fraction(1, 3)),
        ("-1.5", -1.5),
        ("1.0e100", 1e100),
        ("1.0e-7", 1e-7),
        ("+inf.0", math.inf),
        ("-inf.0", -math.inf),
        ("1.0+2.0i", complex(1, 2)),
        ("1.5-2.0i", complex(1.5, -2)),
        ('"a\\nb\\t\\"q\\" \\\\"', 'a\nb\t"q" \\'),
        ('"é λ 日本"', "é λ 日本"),
        ('"\\x1ba\\x7f\\U10ffff\\ue000"', "\x1ba\x7f\U0010ffff\ue000"),
        ("#\\a", Char("a")),
        ("#\\space", Char(" ")),
        ("#\\nul", Char("\0")),
        ("#\\soh", Char("\x01")),
        ("#\\λ", Char("λ")),
        ("#\\20050", Char("\u2028")),
        ("#\\(", Char("(")),
        ("foo", Symbol("foo")),
        ("#{foo bar}#", Symbol("foo bar")),
        ("#{a\\xa;b}#", Symbol("a\nb")),
        ("#{}#", Symbol("")),
        ("...", Symbol("...")),
        ("#:key", Keyword("key")),
        ("#t", True),
        ("#f", False),
        ("#nil", None),
        ("()", []),
        ("(1 2 (3 4))", [1, 2, [3, 4]]),
        ("(1 . 2)", Pair(1, 2)),
        ("(1 2 . 3)", Pair(1, Pair(2, 3))),
        (
            "((one . 0.15) (scheduling-entities 1 189))",
            [Pair(Symbol("one"), 0.15), [Symbol("scheduling-entities"), 1, 189]],
        ),
        ("#(1 #(2) ())", (1, (2,), [])),
        ("#vu8(1 2 255)", b"\x01\x02\xff"),
        ("(quote x)", [Symbol("quote"), Symbol("x")]),
        ("'x", [Symbol("quote"), Symbol("x")]),
        # Quote characters begin a quotation only at a datum's start; Guile prints the
        # symbol "<," bare, and reads "(x, y)" as the symbols "x," and "y".
        ("<,", Symbol("<,")),
        (
            "(x, 'y a`b ,@z)",
            [
                Symbol("x,"),
                [Symbol("quote"), Symbol("y")],
                Symbol("a`b"),
                [Symbol("unquote-splicing"), Symbol("z")],
            ],
        ),
    ],
)
def test_read_what_guile_prints(text: str, value: object) -> None:
    got = sexp.read(text)
    assert got == value
    assert type(got) is type(value)


def test_nan_reads_as_nan() -> None:
    assert math.isnan(sexp.read("+nan.0"))


@pytest.mark.parametrize(
    "text",
    [
        "#<procedure 7fd28002a3b8 at <unknown port>:30:0 (x)>",
        "#<unspecified>",
        "#<directory (guile-user) 7f17a499b6e0>",
        "#f64(1.0 2.0)",
    ],
)
def test_unreadable_objects_are_opaque(text: str) -> None:
    assert sexp.read(text) == Opaque(text)


def test_opaque_inside_a_vector() -> None:
    assert sexp.read("#(#<unspecified> 1 #<procedure car (_)>)") == (
        Opaque("#<unspecified>"),
        1,
        Opaque("#<procedure car (_)>"),
    )


def test_read_value_never_fails() -> None:
    assert sexp.read_value("#<weird") == Opaque("#<weird")
    assert sexp.read_value("(1 2") == Opaque("(1 2")


@pytest.mark.parametrize("text", ["(1 2", ")", "1 2", "", "(1 . )", '"abc'])
def test_read_refuses_what_is_not_one_datum(text: str) -> None:
    with pytest.raises(sexp.SexpError):
        sexp.read(text)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (True, "#t"),
        (None, "#nil"),
        (42, "42"),
        (Fraction(-2, 4), "-1/2"),
        (1.5, "1.5"),
        (math.inf, "+inf.0"),
        (complex(1, -2), "1.0-2.0i"),
        ('a"b\n\x01é', '"a\\"b\\n\\x01é"'),
        (Symbol("foo"), "foo"),
        (Symbol("foo bar"), "#{foo\\x20;bar}#"),
        (Symbol("12"), "#{12}#"),
        (Keyword("k"), "#:k"),
        (Char(" "), "#\\space"),
        (Char("\x01"), "#\\x1"),
        ([1, [2], []], "(1 (2) ())"),
        ((1, "a"), '#(1 "a")'),
        (b"\x00\xff", "#vu8(0 255)"),
        (Pair(1, 2), "(1 . 2)"),
    ],
)
def test_write(value: object, text: str) -> None:
    assert sexp.write(value) == text


def test_write_refuses_values_without_a_datum() -> None:
    with pytest.raises(sexp.SexpError, match="set has no Scheme datum"):
        sexp.write({1, 2})
    with pytest.raises(sexp.SexpError, match="no readable form"):
        sexp.write([Opaque("#<procedure x>")])


def test_write_refuses_lone_surrogates() -> None:
    with pytest.raises(sexp.SexpError, match="U\\+D800 is a lone surrogate"):
        sexp.write("a\ud800")
    with pytest.raises(sexp.SexpError, match="surrogate"):
        sexp.write(Char("\udfff"))


def test_quote_makes_an_expression() -> None:
    assert sexp.quote([1, Symbol("a")]) == "(quote (1 a))"


@pytest.mark.parametrize(
    ("source", "status"),
    [
        ("(+ 1 2)", "complete"),
        ("(define (f x)", "incomplete"),
        ("(+ 1", "incomplete"),
        ('(display "a)', "incomplete"),
        ('(display "(")', "complete"),
        ("#\\( 1", "complete"),
        ("(list #\\) 1)", "complete"),
        ("; (\n(+ 1 2)", "complete"),
        ("#| ( |# 1", "complete"),
        ("#| ( ", "incomplete"),
        ("'", "incomplete"),
        ("(+ 1 2))", "invalid"),
        (",L ecmascript", "complete"),
        ("", "complete"),
    ],
)
def test_input_status(source: str, status: str) -> None:
    assert sexp.input_status(source) == status


# Values whose Scheme text reads back to an equal Python value.
atoms = st.one_of(
    st.integers(),
    st.fractions().filter(lambda f: f.denominator != 1),
    st.floats(allow_nan=False),
    st.complex_numbers(allow_nan=False, allow_infinity=False).filter(lambda c: c.imag != 0),
    st.text(),
    st.characters(exclude_categories=["Cs"]).map(Char),
    st.text(min_size=0).map(Symbol),
    st.from_regex(r"[a-z][a-z0-9-]*", fullmatch=True).map(Keyword),
    st.booleans(),
    st.none(),
    st.binary(),
)
data = st.recursive(
    atoms,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.lists(inner, max_size=5).map(tuple),
        st.tuples(inner, atoms.filter(lambda a: a is not None)).map(lambda p: Pair(*p)),
    ),
    max_leaves=20,
)


@given(data)
def test_write_then_read_gives_the_value_back(value: object) -> None:
    assert sexp.read(sexp.write(value)) == value


@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)))))
def test_lists_of_strings_write_and_read_back(value: list[str]) -> None:
    assert sexp.read(sexp.write(value)) == value


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('("a b" "" "é")', ["a b", "", "é"]),
        ('("a\\"b" "c")', ['a"b', "c"]),
        ('("x" . "y")', Pair("x", "y")),
        ('("x" y)', ["x", Symbol("y")]),
        ("(1 -2 30)", [1, -2, 30]),
        ("(0.5 -1.0e100 3)", [0.5, -1e100, 3]),
        ("(1 - 2)", [1, Symbol("-"), 2]),
        ("(1e 2)", [Symbol("1e"), 2]),
        ("(1.2.3)", [Symbol("1.2.3")]),
        ("(1 . 2)", Pair(1, 2)),
        ("(1_000)", [Symbol("1_000")]),
    ],
)
def test_lists_of_numbers_read_quickly_and_exactly(text: str, value: object) -> None:
    assert sexp.read(text) == value


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ([1, 2, -3], "(1 2 -3)"),
        ([0.5, 1e300, -2.0], "(0.5 1e+300 -2.0)"),
        ([1.0, math.inf], "(1.0 +inf.0)"),
        ([math.nan], "(+nan.0)"),
        ([True, 1], "(#t 1)"),
    ],
)
def test_lists_of_numbers_write_as_guile_reads_them(value: list[object], text: str) -> None:
    assert sexp.write(value) == text


def _decimal(n: int) -> str:
    """``str(n)`` past Python's digit limit, as Guile prints it, without touching the limit."""
    return format(Decimal(n), "f")


@pytest.mark.parametrize(
    "n",
    [7**20000, -(10**100000) + 1, 10**4300, -(10**4299)],
    ids=["7^20000", "-(10^100000-1)", "10^4300", "-10^4299"],
)
def test_integers_of_any_size_read_and_write(n: int) -> None:
    limit = sys.get_int_max_str_digits()
    assert sexp.read(_decimal(n)) == n
    assert sexp.read(f"(1 {_decimal(n)} -2)") == [1, n, -2]  # past the list fast path
    assert sexp.read(sexp.write(n)) == n
    assert sexp.read(sexp.write([n, 3])) == [n, 3]
    assert sys.get_int_max_str_digits() == limit


def test_integers_past_the_digit_limit_are_written_in_hexadecimal() -> None:
    assert sexp.write(10**5000).startswith("#x")
    assert sexp.write([-(16**5000), 2]) == "(#x-1" + "0" * 5000 + " 2)"
    assert sexp.read("#x-ff") == -255
    assert sexp.write(10**4000) == "1" + "0" * 4000  # decimal while Python allows it


def test_rationals_with_huge_parts_read_and_write() -> None:
    f = Fraction(10**6000 + 1, 3**9000)
    assert sexp.read(f"{_decimal(f.numerator)}/{_decimal(f.denominator)}") == f
    assert sexp.read(f"-{_decimal(f.numerator)}/{_decimal(f.denominator)}") == -f
    assert sexp.read(sexp.write(f)) == f
    assert sexp.read(sexp.write(Fraction(1, 10**5000))) == Fraction(1, 10**5000)
    assert sexp.read("#x-1f/3") == Fraction(-31, 3)


def test_odd_integers_and_rationals() -> None:
    assert sexp.read("1/0") == Symbol("1/0")  # as Guile reads it
    assert sexp.write(enum.IntEnum("E", "A B").B) == "2"


def _nested(depth: int) -> list[object]:
    """A list ``depth`` levels deep: ``[[[...]]]``."""
    outer = inner = []
    for _ in range(depth - 1):
        inner.append([])
        inner = inner[0]
    return outer


def _depth(value: object) -> int:
    depth = 0
    while isinstance(value, list):
        depth, value = depth + 1, value[0] if value else None
    return depth


def test_deep_data_is_refused_with_a_clear_error() -> None:
    for write in (sexp.write, sexp.quote):
        with pytest.raises(sexp.SexpError, match="nested deeper than 10000 levels"):
            write(_nested(100_000))
    with pytest.raises(sexp.SexpError, match="nested deeper than 10000 levels"):
        sexp.write([1, (2, Pair(3, _nested(10_000)))])


def test_data_10000_levels_deep_write_and_read_back() -> None:
    text = sexp.write(_nested(10_000))
    assert text == "(" * 10_000 + ")" * 10_000
    assert _depth(sexp.read(text)) == 10_000


def test_reading_deeper_data_gives_the_value() -> None:
    assert _depth(sexp.read("(" * 100_000 + ")" * 100_000)) == 100_000
    assert _depth(sexp.read_value("(" * 100_000 + "1" + ")" * 100_000)) == 100_000


def test_data_that_contains_itself_is_refused() -> None:
    loop: list[object] = [1]
    loop.append(loop)
    with pytest.raises(sexp.SexpError, match="this list contains itself"):
        sexp.write(loop)
    with pytest.raises(sexp.SexpError, match="this list contains itself"):
        sexp.quote([0, (2, loop)])
    shared = [1, 2]
    assert sexp.write([shared, (shared,)]) == "((1 2) #((1 2)))"  # shared is not a loop
