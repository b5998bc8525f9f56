"""Requests sent ahead of their answers: the REPL answers them in order, an interrupt
cancels those still waiting, and a distributed call keeps each node's next chunk
waiting there, with failover, cancel and order kept."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

from sshdist_kernel import (
    DistEvent,
    Node,
    NodeReplError,
    dist_map,
    dist_map_async,
    make_nodes,
    with_ssh,
)
from sshdist_kernel.delayrelay import DelayRelay
from sshdist_kernel.errors import EvalCancelled
from sshdist_kernel.localnodes import LocalNodes
from sshdist_kernel.records import deadline_after

from .conftest import wait_until


def test_requests_sent_ahead_are_answered_in_order(node: Node) -> None:
    pipe = node.open_pipeline("(begin (usleep 20000) 'first)", None, deadline=deadline_after(10))
    try:
        pipe.send("(+ 1 2)", None, deadline_after(10))
        pipe.send('(string-append "a" "b")', None, deadline_after(10))
        assert pipe.outstanding == 3
        answers = [pipe.answer(deadline_after(10)) for _ in range(3)]
    finally:
        pipe.close()
    assert [str(a.value) for a in answers] == ["first", "3", "ab"]
    assert answers[0].node_seconds is not None and answers[0].node_seconds >= 0.02
    assert with_ssh(node, "(* 6 7)", timeout=5).value == 42


def test_an_error_answers_its_own_request_and_the_next_ones_still_come(node: Node) -> None:
    pipe = node.open_pipeline("(car '())", None, deadline=deadline_after(10))
    try:
        pipe.send("'after", None, deadline_after(10))
        with pytest.raises(NodeReplError, match="car"):
            pipe.answer(deadline_after(10))
        assert str(pipe.answer(deadline_after(10)).value) == "after"
    finally:
        pipe.close()


def test_an_interrupt_cancels_the_requests_waiting_behind_the_running_one(node: Node) -> None:
    with_ssh(node, "(define ran '())")
    pipe = node.open_pipeline(
        "(begin (set! ran (cons 'first ran)) (sleep 30))", None, deadline=deadline_after(10)
    )
    for name in ("second", "third"):
        pipe.send(f"(set! ran (cons '{name} ran))", None, deadline_after(10))
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(EvalCancelled):
        pipe.answer(deadline_after(10), cancel=cancel)
    assert node.settle(5) == "ready"
    # The running one was interrupted, the waiting ones never began; the REPL kept its state.
    assert with_ssh(node, "(length ran)", timeout=5).value == 1


def test_a_node_holds_chunks_sent_ahead_and_the_results_keep_their_order(
    nodes: list[Node],
) -> None:
    held: list[int] = []

    def on_event(event: DistEvent) -> None:
        if event.kind == "start":
            held.append(max(n.rrepl._answers_due for n in nodes if n.ready))

    result = dist_map(nodes, "(lambda (x) (usleep 2000) (* x x))", range(300), on_event=on_event)
    assert result == [x * x for x in range(300)]
    assert max(held) >= 2  # a node had a chunk waiting behind the one it worked on


def test_a_node_killed_holding_chunks_sent_ahead_gives_them_all_back(nodes: list[Node]) -> None:
    victim = nodes[1]
    pid = victim.rrepl.pid
    killed = threading.Event()

    def on_event(event: DistEvent) -> None:
        # Killed once it holds two chunks or more: its running one and one waiting.
        if (
            event.node is victim
            and not killed.is_set()
            and victim.ready
            and victim.rrepl._answers_due >= 2
        ):
            killed.set()
            os.kill(pid, signal.SIGKILL)

    result = dist_map(nodes, "(lambda (x) (usleep 20000) (* 2 x))", range(90), on_event=on_event)
    assert killed.is_set()
    assert result == [2 * x for x in range(90)]
    assert [f.node for f in result.failures] == [victim]
    moved = [m for m in result.moves if m.from_node is victim]
    assert len(moved) >= 2 and len({m.job.index for m in moved}) == len(moved)


def test_cancel_interrupts_what_every_node_holds(nodes: list[Node]) -> None:
    for n in nodes:
        with_ssh(n, "(define done-here 0)")
    call = dist_map_async(
        nodes, "(lambda (x) (set! done-here (1+ done-here)) (usleep 200000) x)", range(300)
    )
    wait_until(
        lambda: any(n.ready and n.rrepl._answers_due >= 2 for n in nodes), what="a chunk waiting"
    )
    assert call.cancel()
    assert call.wait_stopped(5)
    assert [n.settle(5) for n in nodes] == ["ready"] * 3
    counts = [with_ssh(n, "done-here", timeout=5).value for n in nodes]
    # Nothing waiting on a node began after the cancel: each had begun its first chunk
    # or two (1 and 2 items) of the 15 items it held (chunks of 1, 2, 4 and 8).
    assert sum(counts) <= 9
    assert [with_ssh(n, "done-here", timeout=5).value for n in nodes] == counts


def test_a_long_round_trip_makes_chunks_bigger_not_one_item_each(
    local_nodes: LocalNodes, tmp_path: Path
) -> None:
    # 50 ms each way.  The old sizing took the round trip for the node's speed and sent
    # one item a chunk for ever (300 chunks for 300 items).
    with DelayRelay([n.port for n in local_nodes.nodes[:3]], 0.05) as relay:
        config = local_nodes.config_through(relay.ports, tmp_path)
        nodes = make_nodes(local_nodes.names[:3], ssh_config=str(config))
        try:
            sizes: list[int] = []
            on_event = lambda e: sizes.append(e.job.size) if e.kind == "done" else None  # noqa: E731
            result = dist_map(nodes, "(lambda (x) (usleep 2000) x)", range(300), on_event=on_event)
        finally:
            for n in nodes:
                n.close()
    assert result == list(range(300))
    assert sum(sizes) == 300 and len(sizes) < 100
    assert max(sizes) >= 20  # 0.1 s of 2 ms items, at the least


def test_slow_first_items_go_to_different_nodes_not_behind_one_another(
    nodes: list[Node],
) -> None:
    # Nothing is sent blind to a node before every node has its first chunk: the three
    # slow items, first in the list, run at once on three nodes.
    where: dict[int, str] = {}

    def on_event(event: DistEvent) -> None:
        if event.kind == "done":
            for item in event.job.data:
                where[item] = event.node.name

    proc = "(lambda (x) (if (< x 3) (usleep 300000)) x)"
    assert dist_map(nodes, proc, range(300), on_event=on_event) == list(range(300))
    assert len({where[0], where[1], where[2]}) == 3
