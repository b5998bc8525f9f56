"""Red-team tests of the hand-over between calls sharing a node (calls take turns on a
node's worker, a chunk each): many calls at once, cancelling a call whose turn waits,
timeouts and failover while calls take turns, and two cases where the turns go wrong
(a watcher's empty turns ping-ponging with another call, and a stopped call waiting
for another call's chunk on a node it never got)."""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter
from collections.abc import Iterator

import pytest

from sshdist_kernel import DistCall, Node, dist_map, make_node
from sshdist_kernel.calldrivers import CallDrivers
from sshdist_kernel.dist import dist_map_async, distribute_async
from sshdist_kernel.nodeworkers import wait_idle, waiting_work

from .conftest import wait_until

SLOW = "(lambda (x) (usleep {us}) x)"


@pytest.fixture
def turns(monkeypatch: pytest.MonkeyPatch) -> dict[tuple[int, int], Counter]:
    """Each call's turns on each node, by (id(call), id(node)): ``turns`` run and
    ``empty`` ones (that sent no chunk)."""
    seen: dict[tuple[int, int], Counter] = {}
    here = threading.local()
    drive, send = CallDrivers._drive, CallDrivers._send

    def counted_drive(self: CallDrivers, node: Node) -> None:
        here.sent = 0
        try:
            drive(self, node)
        finally:
            count = seen.setdefault((id(self), id(node)), Counter())
            count["turns"] += 1
            count["empty"] += here.sent == 0

    def counted_send(self: CallDrivers, node: Node, pipe, attempt):  # type: ignore[no-untyped-def]
        here.sent = getattr(here, "sent", 0) + 1
        return send(self, node, pipe, attempt)

    monkeypatch.setattr(CallDrivers, "_drive", counted_drive)
    monkeypatch.setattr(CallDrivers, "_send", counted_send)
    return seen


@pytest.fixture
def second_node1(ssh_config: str) -> Iterator[Node]:
    """Another node on node1's host: a REPL and a worker of its own."""
    n = make_node("node1", ssh_config=ssh_config)
    yield n
    n.close()


def test_ten_mixed_calls_at_once_all_complete_in_order(nodes: list[Node]) -> None:
    calls, expected = [], []
    for i in range(10):
        n = 20 + 7 * i
        kind = i % 4
        if kind == 0:
            calls.append(dist_map_async(nodes, SLOW.format(us=20000), range(n)))
            expected.append(list(range(n)))
        elif kind == 1:
            calls.append(dist_map_async(nodes, "1+", range(n), chunksize=1))
            expected.append(list(range(1, n + 1)))
        elif kind == 2:
            exprs = [f"(begin (usleep 10000) {k})" for k in range(n)]
            calls.append(distribute_async(nodes, *exprs))
            expected.append(tuple(range(n)))
        else:
            calls.append(
                dist_map_async(nodes, SLOW.format(us=10000), range(n), chunksize="per-node")
            )
            expected.append(list(range(n)))
    for call, want in zip(calls, expected, strict=True):
        got = call.result(timeout=90)
        assert (list(got) if isinstance(want, list) else tuple(got)) == want
        assert not got.failures and not got.moves
    assert wait_idle(nodes, 10)
    assert dist_map(nodes, "1+", range(4), timeout=20) == [1, 2, 3, 4]


def test_calls_on_overlapping_subsets_all_complete(nodes: list[Node]) -> None:
    n1, n2, n3 = nodes
    subsets = [[n1, n2], [n2, n3], [n1, n3], [n1, n2, n3], [n2], [n3, n1]]
    calls = [dist_map_async(s, SLOW.format(us=15000), range(40 + i)) for i, s in enumerate(subsets)]
    for i, call in enumerate(calls):
        assert list(call.result(timeout=90)) == list(range(40 + i))


def hold_for_3_s(node: Node, value: int) -> DistCall:
    """A call whose one chunk holds ``node`` for 3 s, returned once that chunk began."""
    began = threading.Event()
    holder = dist_map_async(
        [node],
        SLOW.format(us=3000000),
        [value],
        chunksize=1,
        on_event=lambda e: e.kind == "start" and began.set(),
    )
    wait_until(began.is_set, 10, "the holder's 3 s chunk")
    return holder


def test_cancelling_a_call_whose_next_turn_waits_behind_another_calls_chunk(
    nodes: list[Node],
) -> None:
    n1 = nodes[0]
    behind = dist_map_async([n1], SLOW.format(us=100000), range(100))  # 10 s of work
    wait_until(lambda: behind.progress > 0, 10, "the first call's first chunk")
    # The first call hands n1 over after its chunk; its next turn queues behind the
    # holder's 3 s chunk.
    holder = hold_for_3_s(n1, 7)
    wait_until(lambda: waiting_work(n1) == 2, 5, "the first call's next turn queued")
    assert behind.cancel()
    # Its queued turn is no driver: nothing to wait for, the holder's chunk runs on.
    assert behind.wait_stopped(0.5)
    assert not holder.done()
    assert holder.result(timeout=20) == [7]
    assert wait_idle([n1], 10)
    assert dist_map([n1], "1+", range(3), timeout=20) == [1, 2, 3]


def test_a_stopped_call_does_not_wait_for_another_calls_chunk_on_a_node_it_never_got(
    nodes: list[Node],
) -> None:
    """A call started beside another whose chunk holds the node: its first driver is
    queued behind that chunk (``_grow``).  Were it counted as a driver from then on,
    ``wait_stopped`` (and ``stop(wait=1)``, and a failed or timed-out ``dist_map``,
    which wait ``STOP_WAIT`` after) waits for the other call's chunk although this call
    never ran on the node (so it did, before every turn counted as a driver only once
    it runs, first turns included)."""
    n1 = nodes[0]
    holder = hold_for_3_s(n1, 5)
    try:
        late = dist_map_async([n1], "1+", range(5))
        wait_until(lambda: waiting_work(n1) == 2, 5, "the late call's driver queued")
        assert late.cancel()
        assert late.wait_stopped(1.0), "wait_stopped waited for another call's chunk"
        assert not holder.done()
    finally:
        assert holder.result(timeout=20) == [5]
    assert dist_map([n1], "1+", range(3), timeout=20) == [1, 2, 3]


def test_a_watcher_with_nothing_to_do_does_not_ping_pong_with_another_call(
    ssh_config: str, second_node1: Node, turns: dict[tuple[int, int], Counter]
) -> None:
    """Call B has one 4 s item: it runs on node1, and B's driver on the other node
    (which call A keeps busy) has nothing to do but watch for a straggler.  When A's
    next turn queues, the watcher resigns and wakes an idle node: the only one is its
    own, busy with A, so B queues a driver there again; A then hands the node over
    after each chunk to a turn of B's that sends nothing and sits WATCH_SLICE (0.2 s)
    before it resigns again: for the whole 4 s, A's node idles twice as long as it
    works, and B gains nothing."""
    n1 = make_node("node1", ssh_config=ssh_config)
    shared = second_node1
    try:
        a = dist_map_async([shared], SLOW.format(us=2000), range(6000))  # ~12 s alone
        wait_until(lambda: a.progress > 0, 10, "A's first chunk")
        b = dist_map_async([n1, shared], "(lambda (x) (usleep 4000000) x)", [9], chunksize=1)
        assert b.result(timeout=30) == [9]
        on_shared = turns.get((id(b), id(shared)), Counter())
        a.cancel()
        assert a.wait_stopped(10)
        # One empty turn is fair (a driver woken that finds nothing); more is ping-pong.
        assert on_shared["empty"] <= 2, on_shared
    finally:
        n1.close()


def test_a_job_timeout_does_not_count_the_wait_for_a_turn(nodes: list[Node]) -> None:
    # Another call's chunks of 1.5 s on every node, this call's job_timeout 1 s.
    other = dist_map_async(nodes, SLOW.format(us=1500000), range(6), chunksize=1)
    wait_until(lambda: all(waiting_work(n) for n in nodes), 10, "the other call on every node")
    got = dist_map(nodes, SLOW.format(us=50000), range(30), job_timeout=1.0, timeout=40)
    assert got == list(range(30))
    assert not got.failures and not got.moves, (got.failures, got.moves)
    assert other.result(timeout=30) == list(range(6))


def test_a_node_killed_while_two_calls_take_turns_on_it(nodes: list[Node]) -> None:
    a = dist_map_async(nodes, SLOW.format(us=30000), range(150))
    b = dist_map_async(nodes, SLOW.format(us=30000), range(100))
    wait_until(lambda: a.progress > 20 and b.progress > 20, 20, "both calls under way")
    os.kill(nodes[1].rrepl.pid, signal.SIGKILL)
    got_a, got_b = a.result(timeout=60), b.result(timeout=60)
    assert list(got_a) == list(range(150)) and list(got_b) == list(range(100))
    for got in (got_a, got_b):
        assert all(f.node is nodes[1] for f in got.failures), got.failures
    assert wait_idle(nodes, 10)
    assert dist_map(nodes, "1+", range(6), timeout=20) == [1, 2, 3, 4, 5, 6]
