"""What the nodes printed, as the magics show it after a call: by node, or folded like
``clush -b`` (each distinct text once, under the host list of the nodes that printed
it)."""

from __future__ import annotations

from sshdist_magics.printed import show_by_node

from sshdist_kernel import NodeOutput


def said(*texts: tuple[int, str, str]) -> list[NodeOutput]:
    return [NodeOutput(job, stream, text) for job, stream, text in texts]


def test_by_node_each_node_has_its_header_even_when_nodes_print_alike(capsys) -> None:
    outputs = {f"node{i}": said((i, "stdout", "hello\n")) for i in (1, 2, 3)}
    show_by_node(outputs, ["node1", "node2", "node3"])
    assert capsys.readouterr().out == "".join(f"[stdout:node{i}]\nhello\n" for i in (1, 2, 3))


def test_folded_each_distinct_text_shows_once_under_its_host_list(capsys) -> None:
    order = [f"cn{i:02d}" for i in range(1, 16)]
    outputs = {name: said((1, "stdout", "Linux 6.1\n")) for name in order}
    outputs["cn05"] = said((1, "stdout", "Linux 5.10\n"), (2, "stderr", "old kernel"))
    outputs["cn13"] = said((1, "stdout", "Linux 5.10\n"))
    del outputs["cn14"]  # printed nothing
    show_by_node(outputs, order)  # more than 8 nodes: folded by default
    seen = capsys.readouterr()
    assert seen.out == ("[stdout:cn[01-04,06-12,15]]\nLinux 6.1\n[stdout:cn[05,13]]\nLinux 5.10\n")
    assert seen.err == "[stderr:cn05]\nold kernel\n"


def test_folding_is_asked_or_refused_whatever_the_count(capsys) -> None:
    outputs = {name: said((0, "stdout", "same")) for name in ("a1", "a2", "b")}
    show_by_node(outputs, ["a1", "a2", "b"], fold=True)
    assert capsys.readouterr().out == "[stdout:a[1-2],b]\nsame\n"
    many = {f"n{i}": said((0, "stdout", "same\n")) for i in range(12)}
    show_by_node(many, list(many), fold=False)
    assert capsys.readouterr().out.count("[stdout:n") == 12


def test_names_a_host_list_cannot_hold_are_listed_plainly(capsys) -> None:
    outputs = {name: said((0, "stdout", "x\n")) for name in ("odd,name", "n[1]")}
    show_by_node(outputs, list(outputs), fold=True)
    assert capsys.readouterr().out == "[stdout:odd,name,n[1]]\nx\n"
