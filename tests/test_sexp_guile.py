"""Python -> Scheme text -> real Guile over real sshd -> Python, for generated data."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from sshdist_kernel import Char, Node, with_ssh
from sshdist_kernel.sexp import quote

from .test_sexp import data


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=data)
def test_guile_reads_and_prints_back_the_same_value(shared_node: Node, value: object) -> None:
    assert with_ssh(shared_node, quote(value)).value == value


def test_every_ascii_and_some_unicode_characters_come_back(shared_node: Node) -> None:
    chars = [Char(chr(i)) for i in [*range(0x80), 0xA0, 0xAD, 0x2028, 0xFEFF, 0x1F600]]
    assert with_ssh(shared_node, quote(chars)).value == chars
    text = "".join(chars)
    assert with_ssh(shared_node, quote(text)).value == text
