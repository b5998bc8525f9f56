"""The magics in a real IPython shell, driving the local nodes."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator

import pytest
from IPython.core.interactiveshell import InteractiveShell
from sshdist_magics import SshdistError

from sshdist_kernel import Node
from sshdist_kernel.localnodes import LocalNodes


@pytest.fixture(scope="module")
def ip(local_nodes: LocalNodes) -> Iterator[InteractiveShell]:
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "sshdist_magics")
    shell.user_ns["cfg"] = str(local_nodes.ssh_config)
    yield shell
    for n in shell.user_ns.get("nodes", []):
        n.close()


def run(ip: InteractiveShell, code: str):
    result = ip.run_cell(code)
    return result


def test_nodes_makes_a_list_and_shows_a_table(ip, capsys) -> None:
    run(ip, "%nodes -o nodes -F $cfg node1 node2 node3")
    out = capsys.readouterr().out
    assert out.startswith("3 node(s) ready in ")
    assert "node2        #<node " in out and "Guile 3." in out
    nodes = ip.user_ns["nodes"]
    assert [n.name for n in nodes] == ["node1", "node2", "node3"]
    assert all(isinstance(n, Node) for n in nodes)
    assert run(ip, "nl = %nodes -F $cfg node1\nlen(nl)").result == 1


def test_with_ssh_shows_values_streams_output_and_stores_the_value(ip, capsys) -> None:
    result = run(ip, '%%with_ssh nodes -o v\n(display "hi\\n")\n(values 1 "two")')
    assert result.success
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "hi"
    assert "= 1\n$" in out and '= "two"' in out
    assert "[node1: module (guile-user), language scheme]" in out
    assert ip.user_ns["v"] == (1, "two")


def test_distribute_returns_a_tuple_in_order(ip, capsys) -> None:
    result = run(ip, '%%distribute nodes\n(+ 1 2)\n(string-upcase "ab")\n\'(1 2)\n42')
    assert result.result == (3, "AB", [1, 2], 42)
    assert "distribute: 4 item(s) on 3 node(s), 0 failover(s), in " in capsys.readouterr().out


def test_dist_map_takes_python_data_and_scheme_proc(ip, capsys) -> None:
    result = run(ip, "squares = %dist_map nodes (lambda (x) (* x x)) range(10)\nsquares")
    assert result.result == [x * x for x in range(10)]
    run(ip, "%dist_map -o names ['node1', 'node2'] string-upcase ['a', 'b', 'c']")
    assert ip.user_ns["names"] == ["A", "B", "C"]


def test_errors_are_short_and_name_node_job_and_guiles_message(ip, capsys) -> None:
    result = run(ip, "%dist_map nodes car [1, 2, 3]")
    assert isinstance(result.error_in_exec, SshdistError)
    text = capsys.readouterr()
    shown = text.out + text.err
    assert "SshdistError: wrong-type-arg on node" in shown
    assert "In procedure car" in shown and "job " in shown
    assert "Traceback" not in shown
    for bad, message in [
        ("%dist_map nodes (lambda (x) x", "PROC is not one Scheme datum"),
        ("%dist_map nodes car", "LST is missing"),
        ("%dist_map no_such_variable car [1]", "does not name nodes"),
        ("%dist_map nodes car 12", "is not a Python sequence"),
        ("%%with_ssh nodes\n(car 1)", "wrong-type-arg on node1"),
    ]:
        assert message in str(run(ip, bad).error_in_exec)
    assert run(ip, "%dist_map nodes 1+ [1]").result == [2]  # the nodes still work


def test_a_failover_is_shown_as_it_happens(ip, capsys) -> None:
    nodes = ip.user_ns["nodes"]
    victim = nodes[1]
    pid = victim.rrepl.pid
    threading.Timer(0.3, os.kill, (pid, signal.SIGKILL)).start()
    result = run(ip, "%dist_map nodes (lambda (x) (usleep 30000) x) range(60)")
    assert result.result == list(range(60))
    out = capsys.readouterr().out
    assert "  node2 failed: " in out
    assert "moved from node2 to node" in out
    assert "dist_map: 60 item(s) on 3 node(s), 1 failover(s), in " in out


def test_loadavg_in_a_terminal_is_a_table(ip, capsys) -> None:
    run(ip, "%loadavg nodes")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["node", "state", "guile", "1", "min", "5", "min", "15", "min"]
    assert [line.split()[:2] for line in lines[1:]] == [
        ["node1", "running"],
        ["node2", "running"],
        ["node3", "running"],
    ]
    assert "usage: %loadavg" in str(run(ip, "%loadavg").error_in_exec)


def test_host_names_in_a_call_reuse_the_nodes_they_made(ip) -> None:
    first = run(ip, "%dist_map ['node1', 'node2'] 1+ [1, 2]")
    second = run(ip, "%dist_map ['node2', 'node1'] 1+ [3, 4]")
    assert (first.result, second.result) == ([2, 3], [4, 5])
    magics = ip.magics_manager.registry["SshdistMagics"]
    assert sorted(magics._named) == ["node1", "node2"]
