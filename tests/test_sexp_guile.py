"""Python -> Scheme text -> real Guile over real sshd -> Python, for generated data."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, assume, given, settings

from sshdist_kernel import (
    Char,
    Node,
    Pair,
    Symbol,
    dist_map,
    hand_out_job,
    make_job,
    sexp,
    with_ssh,
)
from sshdist_kernel.sexp import SexpError, quote

from .test_sexp import _nested, data


def _guile_prints_unreadably(value: object) -> bool:
    """Guile 3.0.8 writes some symbols that begin with ':' bare (`:)` for the symbol
    ":)"), which no reader, Guile's included, reads back; those are left out."""
    if isinstance(value, Symbol):
        return value.startswith(":")
    if isinstance(value, (list, tuple)):
        return any(_guile_prints_unreadably(v) for v in value)
    if isinstance(value, Pair):
        return _guile_prints_unreadably(value.car) or _guile_prints_unreadably(value.cdr)
    return False


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=data)
def test_guile_reads_and_prints_back_the_same_value(shared_node: Node, value: object) -> None:
    assume(not _guile_prints_unreadably(value))
    assert with_ssh(shared_node, quote(value)).value == value


@pytest.mark.parametrize(
    "name", ["0\\", "a\\b", "a b\\", "a}b", "a}#b", "#", "", ".", "1", "a;b", "λ x"]
)
def test_symbols_guile_prints_oddly_come_back(shared_node: Node, name: str) -> None:
    assert with_ssh(shared_node, quote(Symbol(name))).value == Symbol(name)


def test_every_ascii_and_some_unicode_characters_come_back(shared_node: Node) -> None:
    chars = [Char(chr(i)) for i in [*range(0x80), 0xA0, 0xAD, 0x2028, 0xFEFF, 0x1F600]]
    assert with_ssh(shared_node, quote(chars)).value == chars
    text = "".join(chars)
    assert with_ssh(shared_node, quote(text)).value == text


def test_a_bignum_guile_prints_comes_back(shared_node: Node) -> None:
    assert with_ssh(shared_node, "(expt 7 20000)").value == 7**20000
    assert with_ssh(shared_node, "(/ (expt 10 6000) (expt 3 9000))").value == Fraction(
        10**6000, 3**9000
    )


@pytest.mark.parametrize(
    "value",
    [10**100000, -(10**100000) + 1, Fraction(-(10**6000) - 1, 3**9000), [2**20000, 1]],
    ids=["10^100000", "-(10^100000-1)", "huge-rational", "list"],
)
def test_huge_numbers_go_to_guile_and_back(shared_node: Node, value: object) -> None:
    assert with_ssh(shared_node, quote(value)).value == value


def test_dist_map_squares_huge_integers(shared_node: Node, node: Node) -> None:
    assert dist_map([shared_node, node], "(lambda (x) (* x x))", [10**5000, 3]) == [
        10**10000,
        9,
    ]


def test_data_10000_levels_deep_go_to_guile_and_back(shared_node: Node) -> None:
    deep = _nested(10_000)
    back = with_ssh(shared_node, quote(deep)).value
    assert sexp.write(back) == sexp.write(deep)  # == itself would recurse too deep


def _contains_itself() -> list[object]:
    loop: list[object] = [1]
    loop.append(loop)
    return loop


@pytest.mark.parametrize(
    ("make", "message"),
    [(lambda: _nested(100_000), "nested deeper than 10000"), (_contains_itself, "contains itself")],
    ids=["deep", "loop"],
)
def test_deeper_or_self_containing_data_fail_before_any_node_is_busy(
    shared_node: Node, node: Node, make: Callable[[], object], message: str
) -> None:
    with pytest.raises(SexpError, match=message):
        dist_map([shared_node, node], "(lambda (x) x)", [1, make()])
    with pytest.raises(SexpError, match=message):
        hand_out_job(make_job("map", node, [make()], "(lambda (x) x)"))
    assert with_ssh(shared_node, "(+ 1 1)").value == 2
