"""distribute and dist_map over real local nodes: order, failover when a node dies for
real in the middle of a call, errors that stop a call, and timeouts."""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest

from sshdist_kernel import (
    AllNodesFailedError,
    DistEvent,
    Node,
    NodeReplError,
    NodeTimeoutError,
    dist_map,
    distribute,
    make_node,
    make_nodes,
    with_ssh,
)
from sshdist_kernel.localnodes import LocalNodes
from sshdist_kernel.sexp import SexpError

from .conftest import held_until_killed, kill_once_held, reuse_or_make

SLOW_DOUBLE = "(lambda (x) (usleep 20000) (* 2 x))"  # 20 ms an item


@pytest.fixture
def shared_nodes(kept_nodes: list[Node], ssh_config: str) -> list[Node]:
    """Nodes on node1..node3 made once for the module's tests whose calls end with every
    job done and leave the nodes as they found them; none of them kills, stops or times
    out a node, or fails a call part way.  Before each test every node must answer as an
    idle REPL would (the tests that kill an sshd cut the nodes' connections); if one does
    not, fresh nodes replace them all."""
    return reuse_or_make(
        kept_nodes, lambda: make_nodes(["node1", "node2", "node3"], ssh_config=ssh_config)
    )


def test_dist_map_keeps_the_order_of_the_list(shared_nodes: list[Node]) -> None:
    assert dist_map(shared_nodes, "(lambda (x) (* x x))", range(100)) == [x * x for x in range(100)]
    assert dist_map(shared_nodes, "string-upcase", ["a", "b", "c", "d"]) == ["A", "B", "C", "D"]


def test_dist_map_with_no_items_fewer_items_than_nodes_and_one_node(
    shared_nodes: list[Node],
) -> None:
    assert dist_map(shared_nodes, "1+", []) == []
    assert dist_map(shared_nodes, "1+", [41, 1]) == [42, 2]
    assert dist_map(shared_nodes[:1], "1+", range(5)) == [1, 2, 3, 4, 5]
    assert dist_map(shared_nodes[0], "1+", [1]) == [2]


def test_a_node_listed_twice_does_its_jobs_one_after_the_other(shared_nodes: list[Node]) -> None:
    busy: list[int] = []
    overlaps: list[int] = []
    lock = threading.Lock()

    def watch(event: DistEvent) -> None:
        with lock:
            if event.kind == "start":
                if id(event.node) in busy:
                    overlaps.append(event.job.index)
                busy.append(id(event.node))
            elif event.kind == "done":
                busy.remove(id(event.node))

    twice = [shared_nodes[0], shared_nodes[0], shared_nodes[1]]
    assert dist_map(twice, SLOW_DOUBLE, range(12), on_event=watch) == [2 * x for x in range(12)]
    assert overlaps == []


def test_distribute_returns_the_results_in_order(shared_nodes: list[Node]) -> None:
    exprs = ["(+ 1 2)", '(string-append "a" "b")', "(* 6 7)", "'sym", "(list 1 2)"]
    assert distribute(shared_nodes, *exprs) == (3, "ab", 42, "sym", [1, 2])
    assert distribute(shared_nodes) == ()


def test_a_failing_proc_stops_the_call_and_names_job_node_and_message(
    nodes: list[Node],
) -> None:
    data = list(range(30))
    data[25] = "not a number"
    with pytest.raises(NodeReplError) as caught:
        dist_map(nodes, "(lambda (x) (usleep 20000) (* x 2))", data)
    error = caught.value
    assert error.key == "wrong-type-arg"
    assert error.node in ("node1", "node2", "node3")
    first = data.index(error.job.data[0])
    assert first <= 25 < first + error.job.size  # the failing item is in the job named
    assert f"job {error.job.index} (map, item" in str(error)
    assert "In procedure *: Wrong type" in str(error)
    # The other jobs were cancelled, and every node answers again.
    assert [with_ssh(n, "(+ 1 1)").value for n in nodes] == [2, 2, 2]


def test_per_node_chunks_are_the_chapters_jobs(nodes: list[Node]) -> None:
    data = list(range(30))
    data[25] = "not a number"
    with pytest.raises(NodeReplError) as caught:
        dist_map(nodes, "(lambda (x) (* x 2))", data, chunksize="per-node")
    error = caught.value
    assert error.job.index == 2 and error.node == "node3"
    assert "job 2 (map, items 20 to 29): In procedure *: Wrong type" in str(error)
    starts: list[tuple[str, int]] = []
    result = dist_map(
        nodes,
        "1+",
        range(30),
        chunksize="per-node",
        on_event=lambda e: starts.append((e.node.name, e.job.size)) if e.kind == "start" else None,
    )
    assert result == list(range(1, 31))
    assert sorted(starts) == [("node1", 10), ("node2", 10), ("node3", 10)]


def test_bad_input_is_refused_before_any_node_is_busy(shared_nodes: list[Node]) -> None:
    with pytest.raises(SexpError, match="set has no Scheme datum"):
        dist_map(shared_nodes, "1+", [1, {2}])
    with pytest.raises(ValueError, match="proc is not one Scheme expression"):
        dist_map(shared_nodes, "(lambda (x)", [1])
    with pytest.raises(ValueError, match="proc is not one Scheme expression"):
        dist_map(shared_nodes, "(lambda (x) x) 1+", [1])
    with pytest.raises(TypeError, match="not a node"):
        dist_map(["node1"], "1+", [1])
    with pytest.raises(ValueError, match="no nodes"):
        dist_map([], "1+", [1])


@pytest.mark.parametrize("attempt", range(20))
def test_failover_when_the_remote_guile_is_killed(
    nodes: list[Node], attempt: int, tmp_path: Path
) -> None:
    victim, flag = nodes[attempt % 3], tmp_path / "held"
    pid = victim.rrepl.pid
    proc = held_until_killed(victim, flag)
    killer = kill_once_held(flag, lambda: os.kill(pid, signal.SIGKILL))
    result = dist_map(nodes, proc, range(30), timeout=60)
    killer.join(30)
    assert result == [2 * x for x in range(30)]
    assert [f.node for f in result.failures] == [victim]
    assert result.moves and {m.from_node for m in result.moves} == {victim}  # what it held


@pytest.mark.parametrize("attempt", range(20))
def test_failover_when_the_nodes_sshd_is_killed(
    nodes: list[Node], local_nodes: LocalNodes, attempt: int, tmp_path: Path
) -> None:
    index = attempt % 3
    victim, flag = nodes[index], tmp_path / "held"
    name = local_nodes.nodes[index].name
    with_ssh(victim, "'warm")
    proc = held_until_killed(victim, flag)
    killer = kill_once_held(flag, lambda: local_nodes.stop(name, signal.SIGKILL))
    try:
        result = dist_map(nodes, proc, range(30), timeout=60)
    finally:
        killer.join(30)
        local_nodes.start(name)
    assert result == [2 * x for x in range(30)]
    assert [f.node for f in result.failures] == [victim]
    assert with_ssh(victim, "'back").value == "back"  # it reconnects once sshd is back


def test_a_node_down_before_the_call(
    nodes: list[Node], local_nodes: LocalNodes, caplog: pytest.LogCaptureFixture
) -> None:
    down = make_node("node3", ssh_config=str(local_nodes.ssh_config))
    local_nodes.stop("node3", signal.SIGKILL)
    try:
        with caplog.at_level(logging.WARNING, logger="sshdist_kernel.dist"):
            # Slow enough that node1 cannot do all three before node3's worker asks
            # for one, however loaded the machine.
            slow = [f"(begin (usleep 200000) (+ {n} {n}))" for n in (1, 2, 3)]
            result = distribute([nodes[0], down], *slow)
    finally:
        local_nodes.start("node3")
        down.close()
    assert result == (2, 4, 6)
    assert [f.node for f in result.failures] == [down]
    assert [(m.from_node, m.to_node) for m in result.moves] == [(down, nodes[0])]
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("node3 failed: ") for m in messages)
    assert any(re.fullmatch(r"job \d moved from node3 to node1", m) for m in messages)


def test_when_every_node_fails_the_error_lists_each(local_nodes: LocalNodes) -> None:
    doomed = make_nodes(["node2", "node3"], ssh_config=str(local_nodes.ssh_config))
    local_nodes.stop("node2", signal.SIGKILL)
    local_nodes.stop("node3", signal.SIGKILL)
    try:
        with pytest.raises(AllNodesFailedError) as caught:
            dist_map(doomed, "1+", range(4))
    finally:
        local_nodes.start("node2")
        local_nodes.start("node3")
        for n in doomed:
            n.close()
    text = str(caught.value)
    assert text.startswith("every node failed:\n  node")
    assert "node2: " in text and "node3: " in text
    assert len(caught.value.failures) == 2


def stall_once(flag: Path, item: int, seconds: int = 60, then: str = "(* 3 x)") -> str:
    """A proc that sleeps on ``item`` the first time only (a file marks that it has)."""
    return (
        f'(lambda (x) (when (and (= x {item}) (not (file-exists? "{flag}")))'
        f' (close-port (open-output-file "{flag}")) (sleep {seconds})) {then})'
    )


def test_a_straggling_job_is_copied_to_an_idle_node(nodes: list[Node], tmp_path: Path) -> None:
    started: dict[int, Node] = {}

    def on_event(event: DistEvent) -> None:
        if event.kind == "start":
            started.setdefault(event.job.index, event.node)

    with_ssh(nodes[0], "(define kept 'yes)")
    result = dist_map(nodes, stall_once(tmp_path / "flag", 0), range(6), on_event=on_event)
    assert result == [3 * x for x in range(6)]
    assert result.failures == ()
    [move] = result.moves
    assert move.reason == "straggler" and move.from_node is started[0]
    assert move.to_node is not started[0] and move.job.index == 0
    assert "a copy answered before" in str(move)
    # The slow copy was interrupted; its node kept its definitions.
    assert with_ssh(nodes[0], "kept").value == "yes"


def test_a_job_that_overruns_job_timeout_moves_to_another_node(
    nodes: list[Node], tmp_path: Path
) -> None:
    # Two items, one a node: item 0 stalls once, item 1 takes 1.5 s, so item 0 is no
    # straggler yet (3 times the median) when its 2 s run out.
    started: dict[int, Node] = {}

    def on_event(event: DistEvent) -> None:
        if event.kind == "start":
            started.setdefault(event.job.index, event.node)

    proc = stall_once(tmp_path / "flag", 0, then="(when (= x 1) (usleep 1500000)) (* 3 x)")
    result = dist_map(nodes[:2], proc, range(2), job_timeout=2, on_event=on_event)
    assert result == [0, 3]
    assert [type(f.error) for f in result.failures] == [NodeTimeoutError]
    assert result.failures[0].node is started[0]
    assert [m.reason for m in result.moves] == ["failover"]
    assert with_ssh(started[0], "'usable").value == "usable"


def test_the_call_never_waits_past_its_timeout(nodes: list[Node]) -> None:
    started = time.monotonic()
    with pytest.raises(NodeTimeoutError, match="did not finish within 1 s"):
        dist_map(nodes, "(lambda (x) (sleep 60) x)", range(3), timeout=1, job_timeout=30)
    assert time.monotonic() - started < 15  # bounded: the workers let go of the nodes
    assert [with_ssh(n, "(+ 1 1)").value for n in nodes] == [2, 2, 2]


def test_an_expression_may_end_in_a_comment(shared_nodes: list[Node]) -> None:
    assert distribute(shared_nodes, "(+ 1 2) ; three", "'x ;; a symbol") == (3, "x")
