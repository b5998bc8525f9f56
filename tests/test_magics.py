"""The magics in a real IPython shell, driving the local nodes."""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path

import pytest
from IPython.core.displaypub import DisplayPublisher
from IPython.core.interactiveshell import InteractiveShell
from sshdist_magics import SshdistError
from sshdist_magics.nodelist import Hosts

from sshdist_kernel import Node, NodeReplError
from sshdist_kernel.localnodes import LocalNodes, _free_port

from .conftest import held_until_killed, kill_once_held, wait_until


@pytest.fixture(scope="module")
def ip(local_nodes: LocalNodes) -> Iterator[InteractiveShell]:
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "sshdist_magics")
    shell.user_ns["cfg"] = str(local_nodes.ssh_config)
    yield shell
    for n in shell.user_ns.pop("nodes", []):  # the shell is one for every module
        n.close()


def run(ip: InteractiveShell, code: str):
    result = ip.run_cell(code)
    return result


def nodes_in(ip: InteractiveShell) -> list[Node]:
    """The shell's ``nodes``, made by the first test or here when a test runs alone."""
    if "nodes" not in ip.user_ns:
        with redirect_stdout(io.StringIO()):  # the table is another test's business
            run(ip, "%nodes -o nodes -F $cfg node1 node2 node3")
    return ip.user_ns["nodes"]


@contextmanager
def ctrl_c_into_the_cell(ip: InteractiveShell, after: float) -> Iterator[None]:
    """Ctrl-C ``after`` seconds into the cell run inside, if it is still running then
    (never into pytest itself)."""
    running = threading.Event()

    def pre(*_: object) -> None:
        running.set()

    def post(*_: object) -> None:
        running.clear()

    def ctrl_c() -> None:
        if running.is_set():
            os.kill(os.getpid(), signal.SIGINT)

    ip.events.register("pre_run_cell", pre)
    ip.events.register("post_run_cell", post)
    timer = threading.Timer(after, ctrl_c)
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        ip.events.unregister("pre_run_cell", pre)
        ip.events.unregister("post_run_cell", post)


def test_nodes_makes_a_list_and_shows_a_table(ip, capsys) -> None:
    run(ip, "%nodes -o nodes -F $cfg node1 node2 node3")
    out = capsys.readouterr().out
    assert out.startswith("3 node(s) ready in ")
    # Each row: where the node is, its state, its Guile; never a repr (a memory address).
    assert re.search(r"^  node2 +root@127\.0\.0\.1:\d+ +ready +Guile 3\.", out, re.M), out
    assert "#<node" not in out
    nodes = ip.user_ns["nodes"]
    assert [n.name for n in nodes] == ["node1", "node2", "node3"]
    assert all(isinstance(n, Node) for n in nodes)
    # The list shown as a cell's value reads the same way.
    shown = ip.display_formatter.format(nodes)[0]["text/plain"]
    assert shown.startswith("3 node(s) up\n  node1 ") and "#<node" not in shown
    assert run(ip, "nl = %nodes -F $cfg node1\nlen(nl)").result == 1
    one = ip.user_ns["nl"]
    one[0].close()
    closed = ip.display_formatter.format(one)[0]["text/plain"]
    assert re.search(r"^  node1 +root@127\.0\.0\.1:\d+ +closed ", closed, re.M), closed


def test_with_ssh_shows_values_streams_output_and_stores_the_value(ip, capsys) -> None:
    result = run(ip, '%%with_ssh nodes -o v\n(display "hi\\n")\n(values 1 "two")')
    assert result.success
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "hi"
    assert "= 1\n$" in out and '= "two"' in out
    assert "[node1: module (guile-user), language scheme]" in out
    assert ip.user_ns["v"] == (1, "two")


class _Recorder(io.TextIOBase):
    """A stdout that notes each write in ``seen``, beside the displays."""

    def __init__(self, seen: list[object]) -> None:
        self.seen = seen

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.seen.append(text)
        return len(text)


def test_with_ssh_shows_displays_in_order_and_asks_for_input(ip, monkeypatch) -> None:
    seen: list[object] = []

    class Publisher(DisplayPublisher):
        def publish(self, data, metadata=None, source=None, *, transient=None, update=False):
            seen.append((data, (transient or {}).get("display_id"), update))

    monkeypatch.setattr(ip, "display_pub", Publisher(shell=ip))
    prompts: list[str] = []
    monkeypatch.setattr("builtins.input", lambda prompt="": prompts.append(prompt) or "typed")
    nodes_in(ip)
    with redirect_stdout(_Recorder(seen)):
        result = run(
            ip,
            '%%with_ssh nodes\n(display "before\\n")\n'
            '(jupyter-html "<b>working</b>" #:id \'status)\n'
            '(display "after\\n")\n'
            '(jupyter update-display \'status "text/html" "<b>done</b>")\n'
            '(display "name? ") (display (read))',
        )
    assert result.success
    assert seen[:6] == [
        "before\n",
        ({"text/html": "<b>working</b>", "text/plain": "<text/html output>"}, "status", False),
        "after\n",
        ({"text/html": "<b>done</b>", "text/plain": "<text/html output>"}, "status", True),
        "name? ",
        "typed",
    ]
    assert prompts == [""]


def test_distribute_returns_a_tuple_in_order(ip, capsys) -> None:
    result = run(ip, '%%distribute nodes\n(+ 1 2)\n(string-upcase "ab")\n\'(1 2)\n42')
    assert result.result == (3, "AB", [1, 2], 42)
    # How many nodes the scheduler used for 4 quick forms depends on who asked first.
    out = capsys.readouterr().out
    assert re.match(r"distribute: 4 expression\(s\) on [123] node\(s\), 0 failover\(s\), in ", out)


def test_dist_map_takes_python_data_and_scheme_proc(ip, capsys) -> None:
    result = run(ip, "squares = %dist_map nodes (lambda (x) (* x x)) range(10)\nsquares")
    assert result.result == [x * x for x in range(10)]
    run(ip, "%dist_map -o names ['node1', 'node2'] string-upcase ['a', 'b', 'c']")
    assert ip.user_ns["names"] == ["A", "B", "C"]


def test_a_magics_error_is_caught_by_the_librarys_exception_class(ip, capsys) -> None:
    nodes_in(ip)
    code = (
        "from sshdist_kernel import NodeReplError\n"
        "try:\n"
        "    %dist_map nodes car [1, 2, 3]\n"
        "except NodeReplError as e:\n"
        "    caught = (type(e).__name__, e.key)\n"
    )
    assert run(ip, code).success
    assert ip.user_ns["caught"] == ("NodeReplError", "wrong-type-arg")
    assert "Traceback" not in capsys.readouterr().err


def test_errors_are_short_and_name_node_job_and_guiles_message(ip, capsys) -> None:
    nodes_in(ip)
    result = run(ip, "%dist_map nodes car [1, 2, 3]")
    assert isinstance(result.error_in_exec, SshdistError)
    text = capsys.readouterr()
    shown = text.out + text.err
    # Shown by the library's own name, which is what a try: around the magic catches.
    assert isinstance(result.error_in_exec, NodeReplError)
    assert result.error_in_exec.key == "wrong-type-arg"
    assert "NodeReplError: wrong-type-arg on node" in shown
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


def test_a_failover_is_shown_as_it_happens(ip, capsys, tmp_path: Path) -> None:
    nodes = nodes_in(ip)
    victim, flag = nodes[1], tmp_path / "held"
    pid = victim.rrepl.pid
    proc = held_until_killed(victim, flag, then="(usleep 30000) x")
    killer = kill_once_held(flag, lambda: os.kill(pid, signal.SIGKILL))
    result = run(ip, f"%dist_map nodes {proc} range(60)")
    killer.join(30)
    assert result.result == list(range(60))
    out = capsys.readouterr().out
    assert "  node2 failed: " in out
    assert "moved from node2 to node" in out
    # Each chunk node2 held (the one it ran and those sent ahead) moved; node2 is one
    # failover however many it held, and the summary says how much moved.
    moves = len(re.findall(r"^  job \d+ moved from node2 to node[13]$", out, re.M))
    summary = re.search(
        r"dist_map: 60 item\(s\) on 3 node\(s\), 1 failover\(s\) \((\d+) jobs?, "
        r"[1-9]\d* items? moved\), in ",
        out,
    )
    assert summary and int(summary[1]) == moves >= 1, out


def printed_blocks(text: str) -> dict[str, list[str]]:
    """``[stdout:node1]`` headers and the lines under each, by header."""
    blocks: dict[str, list[str]] = {}
    lines: list[str] = []
    for line in text.splitlines():
        if line.startswith("Out["):  # the result, which follows what was printed
            break
        if re.fullmatch(r"\[std(out|err):node\d\]", line):
            lines = blocks.setdefault(line, [])
        elif not line.startswith(("dist_map: ", "distribute: ")):
            lines.append(line)
    return blocks


def test_each_distributed_expression_prints_on_lines_of_its_own(ip, capsys) -> None:
    ip.user_ns["one"] = nodes_in(ip)[:1]  # one node takes them all, in jobs of several
    words = ["one", "two", "three", "four", "five"]
    cell = "\n".join(f'(begin (display "{w}") (display "e" (current-error-port)) 0)' for w in words)
    assert run(ip, f"%%distribute one\n{cell}").result == (0,) * 5
    seen = capsys.readouterr()
    assert printed_blocks(seen.out) == {"[stdout:node1]": words}
    assert printed_blocks(seen.err) == {"[stderr:node1]": ["e"] * 5}
    del ip.user_ns["one"]


def test_group_outputs_fold_shows_a_text_once_under_the_nodes_that_printed_it(ip, capsys) -> None:
    nodes_in(ip)
    same = '(begin (usleep 300000) (display "same") (newline) 1)'
    cell = f"{same}\n{same}\n{same}\n"
    # Slow first expressions go to different nodes: each node prints "same" once.
    assert run(ip, f"%%distribute --group-outputs=fold nodes\n{cell}").result == (1, 1, 1)
    out = capsys.readouterr().out
    assert "\n[stdout:node[1-3]]\nsame\n" in out, out
    assert run(ip, f"%%distribute --group-outputs node nodes\n{cell}").result == (1, 1, 1)
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if line.startswith("[")] == [
        "[stdout:node1]",
        "[stdout:node2]",
        "[stdout:node3]",
    ]
    error = run(ip, f"%%distribute --group-outputs=engine nodes\n{same}").error_in_exec
    assert "invalid choice: 'engine' (choose from 'node', 'fold')" in str(error), error


def test_what_the_jobs_print_is_shown_by_node_after_the_call(ip, capsys) -> None:
    nodes_in(ip)
    proc = '(lambda (x) (display x) (newline) (display "e" (current-error-port)) x)'
    result = run(ip, f"%dist_map nodes {proc} range(30)")
    assert result.result == list(range(30))
    seen = capsys.readouterr()
    out = seen.out
    # The summary first, then each node's lines under its header, in the list's order.
    assert out.startswith("dist_map: 30 item(s) on ")
    blocks = printed_blocks(out)
    assert list(blocks) == sorted(blocks) and blocks  # how many nodes: the scheduler decides
    printed = [int(x) for lines in blocks.values() for x in lines]
    assert sorted(printed) == list(range(30))
    for lines in blocks.values():  # a node's items in the order it did them
        numbers = [int(x) for x in lines]
        assert numbers and numbers == sorted(numbers)
    err = printed_blocks(seen.err)
    assert set(err) == {h.replace("stdout", "stderr") for h in blocks}
    assert all(set(line) == {"e"} for lines in err.values() for line in lines)
    assert sum(len(line) for lines in err.values() for line in lines) == 30  # once an item
    # Text without a final newline still ends its block, before the result.
    result = run(ip, '%%distribute nodes\n(begin (display "one") 1)\n(begin (display "two") 2)')
    assert result.result == (1, 2)
    out = capsys.readouterr().out
    # Each job's text ends its line, even when one node takes both.
    texts = sorted(x for lines in printed_blocks(out).values() for x in lines)
    assert texts == ["one", "two"]
    assert re.search(r"\n(one|two)\nOut\[\d+\]: \(1, 2\)\n$", out)


def test_stream_labels_each_line_with_its_node_and_does_not_repeat_it(ip, capsys) -> None:
    nodes_in(ip)
    proc = "(lambda (x) (display x) (if (< x 20) (newline)) x)"
    result = run(ip, f"%dist_map --stream -o streamed nodes {proc} range(21)")
    assert result.success and ip.user_ns["streamed"] == list(range(21))
    out = capsys.readouterr().out
    assert "[stdout:" not in out  # shown live, not again after the call
    lines = out.splitlines()
    summary = next(i for i, line in enumerate(lines) if line.startswith("dist_map: 21 item(s)"))
    labelled = [re.fullmatch(r"\[(node\d)\] (\d+)", line) for line in lines]
    assert all(labelled[:summary]) and not any(labelled[summary + 1 :])
    assert sorted(int(m[2]) for m in labelled[:summary]) == list(range(21))
    assert {m[1] for m in labelled[:summary]} <= {"node1", "node2", "node3"}
    # --stream works for %%distribute too; stderr goes to stderr, labelled the same way
    result = run(
        ip, '%%distribute --stream nodes\n(begin (display "to err" (current-error-port)) 1)'
    )
    assert result.result == (1,)
    seen = capsys.readouterr()
    assert re.fullmatch(r"\[node\d\] to err\n", seen.err)
    assert "[stderr:" not in seen.out


def test_progress_counts_items_done_per_node_with_rate_and_time_left(ip, capsys) -> None:
    nodes_in(ip)
    # 180 items of 25 ms on 3 nodes: at least 1.5 s, so progress lines show.
    result = run(ip, "%dist_map nodes (lambda (x) (usleep 25000) x) range(180)")
    assert result.result == list(range(180))
    out = capsys.readouterr().out
    pattern = (
        r"  dist_map: (\d+)/180 items, ([\d.]+) items/s, ~([\d.]+) s left"
        r" \| node1 (\d+), node2 (\d+), node3 (\d+)"
    )
    reports = [re.fullmatch(pattern, line) for line in out.splitlines()]
    reports = [m for m in reports if m]
    assert reports, out
    done = [int(m[1]) for m in reports]
    assert done == sorted(done) and 0 < done[0] and done[-1] < 180
    for m in reports:
        assert int(m[1]) == sum(int(m[i]) for i in (4, 5, 6))  # the rows add up to the total
        assert float(m[2]) > 0
    assert re.search(r"^dist_map: 180 item\(s\) on 3 node\(s\), 0 failover\(s\), in ", out, re.M)


def test_a_straggler_copy_is_shown_on_the_rows_and_in_the_summary(
    ip, capsys, tmp_path: Path
) -> None:
    nodes = nodes_in(ip)
    pid, flag = nodes[2].rrepl.pid, tmp_path / "working"
    # node3 is stopped once at work (its first item makes the flag): it holds its chunk.
    mark = f'(unless (file-exists? "{flag}") (close-port (open-output-file "{flag}")))'
    proc = f"(lambda (x) (when (= (getpid) {pid}) {mark}) (usleep 20000) x)"
    stopper = kill_once_held(flag, lambda: os.kill(pid, signal.SIGSTOP))
    try:
        result = run(ip, f"%dist_map nodes {proc} range(150)")
    finally:
        stopper.join(30)
        os.kill(pid, signal.SIGCONT)
    assert result.result == list(range(150))
    out = capsys.readouterr().out
    assert re.search(r"^  job (\d+) runs long on node3: a copy runs on node[12]$", out, re.M)
    assert re.search(r"^  job \d+ done by the copy on node[12], before node3$", out, re.M)
    # node3 held a chunk or two sent ahead when it stopped: each is copied.
    assert re.search(
        r"dist_map: 150 item\(s\) on 3 node\(s\), 0 failover\(s\), (1 straggler copy|[2-9] "
        r"straggler copies), in ",
        out,
    )
    assert run(ip, "%dist_map nodes 1+ range(6)").result == list(range(1, 7))


def test_ctrl_c_stops_the_call_and_the_nodes_in_one_line(ip, capsys) -> None:
    nodes = nodes_in(ip)
    for n in nodes:
        n.eval("(define kept 42)")
    started = time.monotonic()
    with ctrl_c_into_the_cell(ip, 1.5):
        result = run(ip, "%dist_map nodes (lambda (x) (sleep 1) x) range(30)")
    assert isinstance(result.error_in_exec, KeyboardInterrupt)
    assert time.monotonic() - started < 1.5 + 1.5
    seen = capsys.readouterr()
    *progress, note, last = (seen.out + seen.err).splitlines()
    assert all(line.startswith("  dist_map: ") for line in progress), progress
    # 1 s items, first chunks of one item: 3 done at 1 s, 6 at 2 s (and none lost)
    assert re.fullmatch(
        r"dist_map interrupted: [36] of 30 items done on 3 nodes; nodes ready", last
    )
    done = result.error_in_exec.partial  # and their values kept
    assert (
        note
        == f"{len(done)} of 30 items were done: %dist_result --partial gives their values, by index"
    )
    assert len(done) in (3, 6) and all(k == v for k, v in done.items())
    # ready at once, the definitions kept, and the stopped call prints nothing later
    started = time.monotonic()
    assert [n.eval("kept", timeout=5).value for n in nodes] == [42, 42, 42]
    assert time.monotonic() - started < 1
    assert run(ip, "%dist_map nodes 1+ range(3)").result == [1, 2, 3]
    assert run(ip, "%dist_map nodes (lambda (x) (usleep 300000) x) range(12)").success
    later = capsys.readouterr().out
    assert "/30" not in later and "30 item" not in later, later


def test_ctrl_c_in_with_ssh_is_one_line_and_the_node_keeps_its_definitions(ip, capsys) -> None:
    nodes = nodes_in(ip)
    run(ip, '%%with_ssh nodes\n(define kept "yes")')
    capsys.readouterr()
    with ctrl_c_into_the_cell(ip, 1.0):
        result = run(ip, '%%with_ssh nodes\n(display "working") (sleep 30)')
    assert isinstance(result.error_in_exec, KeyboardInterrupt)
    seen = capsys.readouterr()
    assert re.fullmatch(
        r"working\nwith_ssh interrupted after 1\.\d s on node1; node ready\n", seen.out + seen.err
    ), seen
    assert nodes[0].eval("kept", timeout=1).value == "yes"


@pytest.mark.usefixtures("quick_recovery")
def test_ctrl_c_on_code_that_ignores_it_says_the_node_is_still_stopping(ip, nodes, capsys) -> None:
    ip.user_ns["deaf"] = nodes[0]
    run(ip, "%%with_ssh deaf\n(define kept 1)")
    capsys.readouterr()
    deaf = '(display "deaf") (call-with-blocked-asyncs (lambda () (let loop () (loop))))'
    with ctrl_c_into_the_cell(ip, 1.0):
        result = run(ip, f"%%with_ssh deaf\n{deaf}")
    assert isinstance(result.error_in_exec, KeyboardInterrupt)
    seen = capsys.readouterr()
    # Still stopping (as a rule: three interrupts take up to 1.5 s here), or given up already.
    assert re.fullmatch(
        r"deaf\nwith_ssh interrupted after \d\.\d s on node1; node1 (still stopping \(the "
        r"next call waits for it, or for a fresh REPL if it will not stop\)|lost the REPL "
        r"\(the next call starts a fresh one, without the definitions\))\n",
        seen.out + seen.err,
    ), seen
    stopping = "still stopping" in seen.out
    # It will not stop: the next call waits, then runs on a fresh REPL and says so.
    assert run(ip, "%%with_ssh deaf\n(defined? 'kept)").success
    seen = capsys.readouterr()
    assert "$1 = #f\n" in seen.out, seen  # the definitions went with the old REPL
    assert "[the REPL on node1 was replaced by a fresh one (" in seen.err, seen
    assert not stopping or "did not stop after 3 interrupts" in seen.err, seen
    del ip.user_ns["deaf"]


def test_ctrl_c_while_connecting_is_one_line(ip, capsys) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never says a word
        port = silent.getsockname()[1]
        with ctrl_c_into_the_cell(ip, 0.5):
            result = run(ip, f"%nodes -F $cfg node1 root@127.0.0.1:{port}")
    assert isinstance(result.error_in_exec, KeyboardInterrupt)
    seen = capsys.readouterr()
    assert seen.out + seen.err == (
        f"interrupted while connecting to node1, root@127.0.0.1:{port}: no node was made\n"
    )


def test_printed_text_never_runs_into_a_value_or_an_error(ip, capsys) -> None:
    nodes_in(ip)
    run(ip, '%%with_ssh nodes\n(display "printed") 10')
    assert re.match(r"printed\n\$\d+ = 10\n\[node1: module", capsys.readouterr().out)
    result = run(ip, '%%with_ssh nodes\n(display "before") (car 5)')
    seen = capsys.readouterr()
    assert seen.out.startswith("before\n")
    shown = seen.out + seen.err
    assert re.search(r"^NodeReplError: wrong-type-arg on node1", shown, re.M), shown
    assert shown.count("before") == 1  # streamed once, not repeated in the error
    assert isinstance(result.error_in_exec, SshdistError)


def test_dist_map_help_shows_its_options(ip, capsys) -> None:
    nodes_in(ip)
    ip.run_line_magic("pinfo", "%dist_map")
    shown = capsys.readouterr().out
    assert (
        "%dist_map [-o NAME] [--timeout S] [--stream] [--group-outputs node|fold] [--bg] "
        "NODES PROC LST" in shown
    )
    assert "--group-outputs" in shown and "folded" in shown
    assert "--bg" in shown and "%dist_result NAME" in shown
    assert "--stream" in shown and "labelled with its node" in shown
    assert "unrecognized arguments: --bogus" in str(
        run(ip, "%dist_map --bogus 3 nodes car [1]").error_in_exec
    )


def test_host_names_in_a_call_reuse_the_nodes_they_made(ip) -> None:
    first = run(ip, "%dist_map ['node1', 'node2'] 1+ [1, 2]")
    second = run(ip, "%dist_map ['node2', 'node1'] 1+ [3, 4]")
    assert (first.result, second.result) == ([2, 3], [4, 5])
    magics = ip.magics_manager.registry["SshdistMagics"]
    assert sorted(magics.hosts.named) == ["node1", "node2"]


@pytest.fixture
def fresh_hosts(ip: InteractiveShell) -> Iterator[Hosts]:
    """The magics with no -F remembered and no nodes made yet; the old ones after."""
    magics = ip.magics_manager.registry["SshdistMagics"]
    kept, magics.hosts = magics.hosts, Hosts()
    yield magics.hosts
    magics.hosts.close()
    magics.hosts = kept


def test_a_mistyped_ssh_config_is_refused_and_not_remembered(ip, fresh_hosts, capsys) -> None:
    assert run(ip, "%nodes -o first -F $cfg node1").success
    error = run(ip, "%nodes -F /nonexistent node1").error_in_exec
    assert isinstance(error, SshdistError)
    assert str(error) == "-F /nonexistent: no such ssh_config file"
    # Names in later calls still use the -F that worked.
    assert run(ip, "%dist_map ['node2'] 1+ [1]").result == [2]
    ip.user_ns["first"][0].close()


def _close(ip: InteractiveShell, *names: str) -> None:
    for name in names:
        for n in ip.user_ns.pop(name):
            n.close()


def test_nodes_takes_host_lists_a_hostfile_and_the_slurm_allocation(
    ip, fresh_hosts, capsys, monkeypatch, tmp_path
) -> None:
    assert run(ip, "%nodes -o listed -F $cfg node[1-3]").success
    assert capsys.readouterr().out.startswith("3 node(s) ready in ")
    assert [n.name for n in ip.user_ns["listed"]] == ["node1", "node2", "node3"]
    hostfile = tmp_path / "hosts"
    hostfile.write_text("# the local nodes\nnode[2-3]  # two\n\nnode1\n")
    ip.user_ns["hostfile"] = str(hostfile)
    assert run(ip, "%nodes -o filed -F $cfg --hostfile $hostfile").success
    assert [n.name for n in ip.user_ns["filed"]] == ["node2", "node3", "node1"]
    monkeypatch.delenv("SLURM_NODELIST", raising=False)
    monkeypatch.setenv("SLURM_JOB_NODELIST", "node[1-2]")
    assert run(ip, "%nodes -o allocated -F $cfg --slurm").success
    assert [n.name for n in ip.user_ns["allocated"]] == ["node1", "node2"]
    assert run(ip, "%dist_map allocated 1+ [1, 2, 3]").result == [2, 3, 4]
    # A host list names nodes anywhere NODES is taken, with the -F that worked.
    assert run(ip, "%dist_map 'node[2-3]' 1+ [1, 2]").result == [2, 3]
    assert sorted(fresh_hosts.named) == ["node2", "node3"]
    _close(ip, "listed", "filed", "allocated")


def test_nodes_host_list_mistakes_are_one_line(ip, fresh_hosts, capsys, monkeypatch, tmp_path):
    hostfile = tmp_path / "hosts"
    hostfile.write_text("node1\nnode[2-\n")
    ip.user_ns["hostfile"] = str(hostfile)
    monkeypatch.delenv("SLURM_JOB_NODELIST", raising=False)
    monkeypatch.delenv("SLURM_NODELIST", raising=False)
    cases = {
        "%nodes -F $cfg node[3-1]": (
            "host list 'node[3-1]': the range 3-1 in 'node[3-1]' runs backwards; write 1-3"
        ),
        "%nodes -F $cfg --hostfile $hostfile": (
            f"--hostfile {hostfile}, line 2: host list 'node[2-': '[' at position 4 is never closed"
        ),
        "%nodes -F $cfg --hostfile /nonexistent/hosts": (
            "--hostfile /nonexistent/hosts: No such file or directory"
        ),
        "%nodes -F $cfg --slurm": (
            "--slurm: not inside a Slurm allocation: SLURM_JOB_NODELIST is not set "
            "(run under salloc, sbatch or srun, or name the hosts)"
        ),
    }
    for line, message in cases.items():
        error = run(ip, line).error_in_exec
        assert isinstance(error, SshdistError) and str(error) == message, (line, error)
    shown = capsys.readouterr().out.splitlines()
    assert shown == [f"SshdistError: {m}" for m in cases.values()]
    assert fresh_hosts.named == {}


def test_nodes_local_refuses_a_count_below_one_in_one_line(ip, fresh_hosts) -> None:
    error = run(ip, "%nodes --local -1").error_in_exec
    assert isinstance(error, SshdistError)
    assert str(error) == "--local: start at least one node, not -1"
    assert fresh_hosts.local is None


def test_nodes_local_starts_more_nodes_when_more_are_asked_for(ip, fresh_hosts, capsys) -> None:
    assert run(ip, "%nodes -o one --local 1").success
    assert run(ip, "%nodes -o three --local 3").success
    three = ip.user_ns["three"]
    assert [n.name for n in three] == ["node1", "node2", "node3"]
    assert run(ip, "%dist_map three 1+ range(3)").result == [1, 2, 3]
    assert len(fresh_hosts.local.nodes) == 3
    for n in [*ip.user_ns.pop("one"), *ip.user_ns.pop("three")]:
        n.close()


def test_bad_arguments_fail_before_any_progress_is_drawn(ip, capsys) -> None:
    nodes_in(ip)
    error = run(ip, "%dist_map --timeout 0 nodes 1+ range(3)").error_in_exec
    assert isinstance(error, SshdistError) and "timeout" in str(error)
    error = run(ip, "%dist_map nodes 1+ [object()]").error_in_exec
    assert isinstance(error, SshdistError) and "object" in str(error)
    error = run(ip, "%%distribute --timeout -1 nodes\n(+ 1 2)").error_in_exec
    assert isinstance(error, SshdistError) and "timeout" in str(error)
    shown = capsys.readouterr().out.splitlines()  # the three errors, no summary before them
    assert [line.split(":")[0] for line in shown] == ["ValueError", "SexpError", "ValueError"]


def test_a_call_on_a_fresh_repl_says_the_old_one_was_replaced(ip, nodes, capsys) -> None:
    ip.user_ns["fresh"] = nodes
    run(ip, "%%with_ssh fresh[0]\n(define kept 1)")
    run(ip, "%dist_map fresh 1+ range(3)")
    channels = [n.rrepl._stream.channel for n in nodes[:2]]
    for n in nodes[:2]:
        os.kill(n.rrepl.pid, signal.SIGKILL)  # the REPL dies; the connection stays
    wait_until(lambda: all(c.eof_received for c in channels), what="the REPLs' channels end")
    capsys.readouterr()
    said = "[the REPL on {} was replaced by a fresh one ("
    assert run(ip, "%%with_ssh fresh[0]\n(+ 1 2)").success
    seen = capsys.readouterr()
    assert seen.err.startswith(said.format("node1")), seen
    assert seen.err.endswith("): definitions made before are lost]\n"), seen.err
    assert seen.err.count("\n") == 1 and "$" in seen.out
    # Items of 0.1 s each, so that every node takes some (quick ones may all go to two).
    slow = "(lambda (x) (usleep 100000) (1+ x))"
    assert run(ip, f"%dist_map fresh {slow} range(6)").result == list(range(1, 7))
    seen = capsys.readouterr()
    assert said.format("node2") in seen.err and "node1" not in seen.err, seen  # once each
    run(ip, "%dist_map fresh 1+ range(6)")
    assert "replaced" not in capsys.readouterr().err
    del ip.user_ns["fresh"]


def test_a_job_on_a_repl_set_to_another_language_is_a_clear_error(ip, nodes, capsys) -> None:
    ip.user_ns["fresh"] = nodes
    assert run(ip, "%%with_ssh fresh[1]\n,L ecmascript").success
    # Items of 0.1 s, so that node2 takes one (quick ones may all go to the others).
    slow = "(lambda (x) (usleep 100000) (* x x))"
    error = run(ip, f"%dist_map fresh {slow} range(6)").error_in_exec
    assert isinstance(error, SshdistError)
    assert str(error).startswith("repl-language on node2: job "), error
    assert "reads ecmascript (set with ,L ecmascript), and a job is Scheme" in str(error)
    assert "switch it back with ,L scheme on node2" in str(error)
    # On node2 alone: on all three, the others may do every expression before it starts.
    error = run(ip, "%%distribute fresh[1:2]\n(+ 1 2)\n(+ 3 4)\n(+ 5 6)").error_in_exec
    assert "the REPL on node2 reads ecmascript" in str(error), error
    assert run(ip, "%%with_ssh fresh[1]\n,L scheme").success
    assert run(ip, "%dist_map fresh (lambda (x) (* x x)) range(6)").result == [
        0, 1, 4, 9, 16, 25,
    ]  # fmt: skip
    del ip.user_ns["fresh"]


def test_ctrl_c_just_after_the_call_ended_shows_its_result(ip, monkeypatch, capsys) -> None:
    import sshdist_magics.magics as magics_module

    nodes_in(ip)
    started = magics_module.dist_map_async

    def ends_with_ctrl_c(*args, **kwargs):  # Ctrl-C the moment the call has its result
        call = started(*args, **kwargs)
        call.add_done_callback(lambda _: os.kill(os.getpid(), signal.SIGINT))
        return call

    monkeypatch.setattr(magics_module, "dist_map_async", ends_with_ctrl_c)
    result = run(ip, "%dist_map nodes 1+ range(3)")
    assert result.result == [1, 2, 3], result.error_in_exec
    out = capsys.readouterr().out
    assert re.match(r"dist_map: 3 item\(s\) on \d node\(s\), 0 failover\(s\), in ", out), out
    assert "interrupted" not in out


def test_nodes_shows_the_hosts_that_did_not_come_up_below_the_nodes(
    ip, fresh_hosts, capsys
) -> None:
    closed = f"root@127.0.0.1:{_free_port()}"
    ip.user_ns["closed"] = closed
    assert run(ip, "%nodes -o some -F $cfg node2 $closed node1").success
    shown = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"2 of 3 node\(s\) ready in \d+\.\d\d s; 1 host\(s\) failed", shown[0])
    assert [line.split()[0] for line in shown[1:]] == ["node2", "node1", closed]
    port = closed.rsplit(":", 1)[1]
    assert shown[3] == (
        f"  {closed} FAILED: {closed} refused the connection: "
        f"is sshd running and listening on port {port}?"
    )
    some = ip.user_ns["some"]
    assert [n.name for n in some] == ["node2", "node1"]
    assert list(some.failed) == [closed]
    _close(ip, "some")


def test_nodes_strict_fails_on_any_host_and_none_up_is_an_error(ip, fresh_hosts, capsys) -> None:
    closed = f"root@127.0.0.1:{_free_port()}"
    ip.user_ns["closed"] = closed
    error = run(ip, "%nodes -o strict -F $cfg --strict node1 $closed").error_in_exec
    assert isinstance(error, SshdistError) and "refused the connection" in str(error)
    assert "strict" not in ip.user_ns
    error = run(ip, "%nodes -o none -F $cfg $closed").error_in_exec
    assert isinstance(error, SshdistError)
    lines = str(error).splitlines()
    assert re.fullmatch(r"no node came up in \d+\.\d\d s: 1 host\(s\) failed", lines[0])
    assert lines[1].startswith(f"  {closed} FAILED: ") and len(lines) == 2
    assert "none" not in ip.user_ns
    capsys.readouterr()
    error = run(ip, "%nodes -F $cfg --max-connecting 0 node1").error_in_exec
    assert isinstance(error, SshdistError) and "max_connecting" in str(error)


def test_nodes_guile_names_the_guile_those_nodes_run(ip, fresh_hosts, capsys) -> None:
    guile = shutil.which("guile-2.2")
    if guile is None:
        pytest.skip("no guile-2.2 here (make test installs Debian's guile-2.2)")
    assert run(ip, "%nodes -o old -F $cfg --guile guile-2.2 node1").success
    assert re.search(r"node1 .* Guile 2\.2\.\d+", capsys.readouterr().out)
    assert run(ip, "%dist_map old 1+ [1, 2]").result == [2, 3]
    # Names in later calls use the --guile that worked, as they use -F.
    [version] = run(ip, "%dist_map ['node2'] (lambda (x) (version)) [0]").result
    assert version.startswith("2.2.")
    error = run(ip, "%nodes -F $cfg --guile /opt/guile/bin/guile node3").error_in_exec
    assert isinstance(error, SshdistError)
    assert "'/opt/guile/bin/guile' is not installed on node3" in str(error)
    _close(ip, "old")


def test_nodes_transport_openssh_is_used_and_remembered_for_names(
    short_tmp, ip, fresh_hosts, capsys, monkeypatch
) -> None:
    from sshdist_kernel.opensshsession import OpenSshSession

    monkeypatch.setenv("SSHDIST_CONTROL_DIR", str(short_tmp / "cm"))  # sockets: a short path
    assert run(ip, "%nodes -o viassh --transport openssh -F $cfg node1").success
    try:
        assert isinstance(ip.user_ns["viassh"][0].session, OpenSshSession)
        assert run(ip, "%dist_map ['node2'] 1+ [1]").result == [2]  # names: openssh too
        assert isinstance(fresh_hosts.named["node2"].session, OpenSshSession)
    finally:
        _close(ip, "viassh")
    assert run(ip, "%nodes --transport telnet node1").error_in_exec is not None
