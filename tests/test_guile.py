"""The loop on Guile 2.2 (Debian's guile-2.2, named with guile=) beside 3.0 nodes."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from sshdist_kernel import (
    UNIX,
    Node,
    NodeReplError,
    dist_map,
    make_node,
    make_nodes,
    node_stop_server,
    with_ssh,
)

pytestmark = pytest.mark.skipif(
    shutil.which("guile-2.2") is None,
    reason="no guile-2.2 here (make test installs Debian's guile-2.2)",
)


@pytest.fixture
def old(ssh_config: str) -> Iterator[Node]:
    """node1 running Guile 2.2."""
    n = make_node("node1", ssh_config=ssh_config, guile="guile-2.2")
    yield n
    n.close()


def test_a_node_runs_the_guile_it_was_made_with(old: Node, ssh_config: str) -> None:
    assert old.version is not None and old.version.startswith("2.2.")
    assert with_ssh(old, "(version)").value == old.version
    with make_node("node2", ssh_config=ssh_config) as new:
        assert new.version is not None and new.version.startswith("3.")


def test_with_ssh_output_errors_and_procedures_on_2_2(old: Node) -> None:
    result = with_ssh(old, "(define* (f a #:optional (b 2) #:key (c 3)) (list a b c))", "(f 1)")
    assert result.value == [1, 2, 3]
    printed = with_ssh(old, '(display "hi") (newline) (values 1 2)')
    assert (printed.value, printed.output) == ((1, 2), "hi\n")
    with pytest.raises(NodeReplError, match="wrong-type-arg on node1") as caught:
        with_ssh(old, "(car 1)")
    assert caught.value.key == "wrong-type-arg"
    with pytest.raises(NodeReplError, match="unbound-variable"):
        with_ssh(old, "(no-such-procedure)")
    # The REPL goes on after an error, with its definitions.
    assert with_ssh(old, "(f 5 6 #:c 7)").value == [5, 6, 7]
    with_ssh(old, ",L ecmascript")
    assert old.repl_language == "ecmascript"
    assert with_ssh(old, "1 + 2;").value == 3
    with_ssh(old, ",L scheme")


def test_rich_display_and_input_on_2_2(old: Node) -> None:
    shown = []
    result = with_ssh(old, '(jupyter-html "<b>hi</b>") 1', on_display=shown.append)
    assert result.value == 1
    assert [d.data for d in shown] == [{"text/html": "<b>hi</b>"}]
    asked = []

    def answer(prompt: str) -> str:
        asked.append(prompt)
        return "typed"

    assert with_ssh(old, "(read-line)", on_input=answer).value == "typed"
    assert len(asked) == 1


def test_dist_map_over_a_2_2_node_and_3_0_nodes(old: Node, ssh_config: str) -> None:
    new = make_nodes(["node2", "node3"], ssh_config=ssh_config)
    try:
        items = list(range(40))
        proc = "(lambda (x) (list (* x x) (effective-version)))"
        result = dist_map([old, *new], proc, items)
        assert [square for square, _ in result] == [x * x for x in items]
        # The chapter's one job per node: every node, the 2.2 one too, maps a part.
        per_node = dist_map([old, *new], proc, items, chunksize="per-node")
        assert [square for square, _ in per_node] == [x * x for x in items]
        assert sorted({version for _, version in per_node}) == ["2.2", "3.0"]
    finally:
        for n in new:
            n.close()


def test_a_repl_server_on_2_2(ssh_config: str) -> None:
    n = make_node("node3", UNIX, ssh_config=ssh_config, guile="guile-2.2")
    try:
        assert n.version is not None and n.version.startswith("2.2.")
        with_ssh(n, "(define kept 41)")
        shown = []
        assert (
            with_ssh(n, '(jupyter-html "<i>x</i>") (1+ kept)', on_display=shown.append).value == 42
        )
        assert [d.data for d in shown] == [{"text/html": "<i>x</i>"}]
        with pytest.raises(NodeReplError, match="wrong-type-arg"):
            with_ssh(n, "(car 1)")
    finally:
        node_stop_server(n)
        n.close()
