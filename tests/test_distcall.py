"""The live distributed call on real nodes: balance, output by node, cancel, SIGINT,
the Future a caller can wait on, and chunk sizes as asked."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from sshdist_kernel import (
    DistCall,
    DistEvent,
    Node,
    NodeOutput,
    NodeTimeoutError,
    dist_map,
    dist_map_async,
    distribute,
    distribute_async,
    make_nodes,
    with_ssh,
)

from .conftest import wait_until


def items_by_node(events: list[DistEvent]) -> Counter[str]:
    done: Counter[str] = Counter()
    for e in events:
        if e.kind == "done":
            done[e.node.name] += e.job.size
    return done


def test_a_node_three_times_slower_gets_fewer_items(nodes: list[Node]) -> None:
    for node, slow in zip(nodes, (1, 1, 3), strict=True):
        with_ssh(node, f"(define slow {slow})")
    events: list[DistEvent] = []
    result = dist_map(
        nodes, "(lambda (x) (usleep (* slow 2000)) x)", range(300), on_event=events.append
    )
    assert result == list(range(300))
    done = items_by_node(events)
    assert sum(done.values()) == 300
    # Fair shares are 3:3:1; the slow node does clearly less than a fast one.
    assert done["node3"] < 0.6 * min(done["node1"], done["node2"])


def test_printed_output_arrives_labelled_and_is_kept_by_node(nodes: list[Node]) -> None:
    events: list[DistEvent] = []
    proc = '(lambda (x) (display x) (newline) (display "e" (current-error-port)) (* 2 x))'
    result = dist_map(nodes, proc, range(40), on_event=events.append)
    assert result == [2 * x for x in range(40)]
    heard = [e for e in events if e.kind == "output"]
    assert heard and all(isinstance(e.detail, NodeOutput) for e in heard)
    # What each node printed is, in order, the items of the jobs it did.
    done: dict[str, list[int]] = {}
    for e in events:
        if e.kind == "done":
            done.setdefault(e.node.name, []).extend(e.job.data)
    for name, outs in result.outputs.items():
        printed = "".join(o.text for o in outs if o.stream == "stdout").split()
        assert printed == [str(x) for x in done[name]]
    printed = result.printed("stdout")
    assert sorted(int(x) for text in printed.values() for x in text.split()) == list(range(40))
    assert "".join(result.printed("stderr").values()) == "e" * 40
    # distribute too, with the expression's own output
    shown = distribute(nodes, '(begin (display "one") 1)', '(begin (display "two") 2)')
    assert shown == (1, 2)
    assert sorted("".join(shown.printed().values())) == sorted("onetwo")


def test_chunksize_is_honoured(nodes: list[Node]) -> None:
    sizes: list[int] = []
    on_event = lambda e: sizes.append(e.job.size) if e.kind == "start" else None  # noqa: E731
    assert dist_map(nodes, "1+", range(23), chunksize=5, on_event=on_event) == list(range(1, 24))
    assert sorted(sizes) == [3, 5, 5, 5, 5]
    for bad in (0, -1, 2.5, "many", True):
        with pytest.raises(ValueError, match="chunksize is a number of items"):
            dist_map(nodes, "1+", [1], chunksize=bad)


def test_the_call_is_a_future_that_can_be_awaited(nodes: list[Node]) -> None:
    call = dist_map_async(nodes, "(lambda (x) (usleep 20000) (* x x))", range(30))
    assert isinstance(call, DistCall) and call.total == 30
    assert call.running() and not call.done()
    assert call.result(timeout=30) == [x * x for x in range(30)]
    assert call.done() and not call.running() and call.progress == 30
    assert not call.cancel()  # nothing left to stop

    async def both() -> tuple:
        a = asyncio.wrap_future(dist_map_async(nodes, "1+", range(5)))
        b = asyncio.wrap_future(distribute_async(nodes, "(+ 1 2)", "'x"))
        return (*await asyncio.gather(a, b), await dist_map_async(nodes, "1-", [1, 2]))

    assert asyncio.run(both()) == ([1, 2, 3, 4, 5], (3, "x"), [0, 1])
    assert repr(call) == "<DistCall dist_map: 30/30 items on 3 nodes, done>"
    forms = distribute_async(nodes, "1", "2")
    forms.result(timeout=30)
    assert repr(forms) == "<DistCall distribute: 2/2 expressions on 3 nodes, done>"


def test_cancel_stops_the_nodes_and_keeps_their_definitions(nodes: list[Node]) -> None:
    for n in nodes:
        with_ssh(n, "(define kept 'yes)")
    busy: set[str] = set()
    on_event = lambda e: busy.add(e.node.name) if e.kind == "start" else None  # noqa: E731
    call = dist_map_async(nodes, "(lambda (x) (sleep 5) x)", range(9), on_event=on_event)
    wait_until(lambda: len(busy) == 3, what="every node busy")
    assert call.cancel() and call.cancelled()
    assert call.wait_stopped(2)
    with pytest.raises(Exception) as caught:  # CancelledError
        call.result(timeout=1)
    assert type(caught.value).__name__ == "CancelledError"
    ready = time.monotonic()
    assert [with_ssh(n, "kept", timeout=5).value for n in nodes] == ["yes"] * 3
    assert time.monotonic() - ready < 1.0


def test_the_values_done_are_kept_when_a_call_ends_short(nodes: list[Node]) -> None:
    call = dist_map_async(nodes, "(lambda (x) (usleep 100000) (* x x))", range(60))
    wait_until(lambda: call.progress >= 4, what="four items done")
    running = call.partial()  # a snapshot, by index, while it runs
    assert len(running) >= 4 and all(v == k * k for k, v in running.items())
    assert call.cancel()
    with pytest.raises(Exception) as caught:  # CancelledError
        call.result(timeout=1)
    assert caught.value.partial == call.partial()
    assert running.items() <= call.partial().items() and len(call.partial()) < 60
    # A failure: the error carries what was done before it, not the failed item.
    with pytest.raises(Exception) as failed:  # NodeReplError
        distribute(nodes, "(+ 1 1)", "(car '())", "(* 3 3)", "(usleep 300000)")
    assert type(failed.value).__name__ == "NodeReplError"
    assert 1 not in failed.value.partial
    assert set(failed.value.partial.items()) <= {(0, 2), (2, 9)}


def test_an_exception_from_on_event_ends_the_call(nodes: list[Node]) -> None:
    def on_event(event: DistEvent) -> None:
        if event.kind == "done":
            raise RuntimeError("the display broke")

    started = time.monotonic()
    with pytest.raises(RuntimeError, match="the display broke"):
        dist_map(nodes, "(lambda (x) (usleep 200000) x)", range(60), on_event=on_event)
    assert time.monotonic() - started < 3
    assert [with_ssh(n, "(+ 1 1)", timeout=5).value for n in nodes] == [2, 2, 2]


def test_the_calls_timeout_stops_the_nodes_and_keeps_their_definitions(
    nodes: list[Node],
) -> None:
    for n in nodes:
        with_ssh(n, "(define kept 'yes)")
    for _ in range(3):  # the call's timer and the chunks' own timeouts fire together
        with pytest.raises(NodeTimeoutError, match="did not finish within 1 s: 0 of 6 items"):
            dist_map(nodes, "(lambda (x) (sleep 30) x)", range(6), timeout=1)
        ready = time.monotonic()
        assert [with_ssh(n, "kept", timeout=5).value for n in nodes] == ["yes"] * 3
        assert time.monotonic() - ready < 1.0
    assert [n.restarts for n in nodes] == [0, 0, 0]


def test_job_timeout_bounds_chunks_the_scheduler_sizes(nodes: list[Node]) -> None:
    # 0.3 s items and 1 s a job: the chunks are sized to fit, so no node fails.
    result = dist_map(nodes, "(lambda (x) (usleep 300000) x)", range(12), job_timeout=1)
    assert result == list(range(12)) and result.failures == ()


def test_a_stopped_node_holding_the_only_job_is_worked_around(
    nodes: list[Node], stopped: list[int]
) -> None:
    events: list[DistEvent] = []
    pid = nodes[0].rrepl.pid
    os.kill(pid, signal.SIGSTOP)
    stopped.append(pid)
    # node1 starts first and takes the one item; with no other job to compare it
    # with, it is copied after STRAGGLER_ALONE seconds.
    result = dist_map(nodes, "1+", [41], timeout=30, on_event=events.append)
    assert result == [42]
    if any(e.kind == "start" and e.node is nodes[0] for e in events):
        assert [(m.from_node, m.reason) for m in result.moves] == [(nodes[0], "straggler")]


def test_what_a_losing_copy_printed_is_not_on_the_result(nodes: list[Node], tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    proc = (
        f'(lambda (x) (display x) (newline) (when (and (= x 0) (not (file-exists? "{flag}")))'
        f' (close-port (open-output-file "{flag}")) (sleep 60)) x)'
    )
    result = dist_map(nodes, proc, range(6))
    assert result == list(range(6)) and [m.reason for m in result.moves] == ["straggler"]
    printed = "".join(result.printed("stdout").values()).split()
    assert sorted(printed) == [str(x) for x in range(6)]  # item 0 once: the winner's


def test_a_call_from_its_own_nodes_worker_is_refused(nodes: list[Node]) -> None:
    outcomes: list[object] = []

    def on_event(event: DistEvent) -> None:
        if event.kind == "done":
            try:
                outcomes.append(dist_map(event.node, "1+", [1], timeout=10))
            except RuntimeError as exc:
                outcomes.append(str(exc))

    slow = "(lambda (x) (usleep 50000) (1+ x))"
    assert dist_map(nodes, slow, range(6), on_event=on_event) == list(range(1, 7))
    # Events heard on a node's worker refuse a call on that node, which would wait
    # for itself; those heard on the caller's own thread may call it.
    refused = [o for o in outcomes if isinstance(o, str)]
    assert refused and all("would wait for itself" in o for o in refused)
    assert all(o == [2] for o in outcomes if not isinstance(o, str))


SIGINT_CHILD = textwrap.dedent(
    """
    import json, sys, time
    from sshdist_kernel import dist_map, make_nodes, with_ssh
    nodes = make_nodes(["node1", "node2", "node3"], ssh_config=sys.argv[1])
    for n in nodes:
        with_ssh(n, "(define kept 'yes)")
    busy = set()

    def on_event(event):
        if event.kind == "start" and event.node.name not in busy:
            busy.add(event.node.name)
            if len(busy) == 3:
                print("busy", flush=True)

    try:
        dist_map(nodes, "(lambda (x) (sleep 1) x)", range(30), on_event=on_event)
        print(json.dumps({"interrupted": False}), flush=True)
    except KeyboardInterrupt:
        caught = time.monotonic()
        kept = [with_ssh(n, "kept", timeout=5).value for n in nodes]
        print(json.dumps({"interrupted": True, "kept": kept,
                          "ready_s": time.monotonic() - caught}), flush=True)
    """
)


def test_sigint_in_the_middle_of_a_call_leaves_every_node_ready(ssh_config: str) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", SIGINT_CHILD, ssh_config],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        ready, _, _ = select.select([child.stdout], [], [], 30)  # bounded: no hang
        assert ready and child.stdout.readline() == "busy\n"  # each node began a 1 s item
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=30)
    finally:
        child.kill()
    assert out.strip(), err
    report = json.loads(out.strip().splitlines()[-1])
    assert report["interrupted"], err
    assert report["kept"] == ["yes", "yes", "yes"]
    assert report["ready_s"] < 1.0
    assert "Traceback" not in err.replace("KeyboardInterrupt", "")


def test_calls_reuse_one_worker_thread_per_node(nodes: list[Node]) -> None:
    threads: set[int] = set()
    on_event = lambda e: threads.add(threading.get_ident()) if e.kind == "start" else None  # noqa: E731
    before = threading.active_count()
    for _ in range(20):
        assert dist_map(nodes, "1+", range(30), on_event=on_event) == list(range(1, 31))
    assert len(threads) <= 3
    assert threading.active_count() <= before + 3


def test_a_dropped_node_ends_its_worker_thread_once_collected(ssh_config: str) -> None:
    before = set(threading.enumerate())  # earlier tests' nodes may still have workers
    dropped = make_nodes(["node1", "node2"], ssh_config=ssh_config)
    assert dist_map(dropped, "1+", range(4)) == [1, 2, 3, 4]
    names = {f"sshdist {n.name}" for n in dropped}
    workers = [t for t in set(threading.enumerate()) - before if t.name in names]
    assert workers
    for n in dropped:
        n.close()
    del dropped, n
    gc.collect()
    # Within seconds, not the 30 s an idle worker waits for work.
    wait_until(lambda: not any(t.is_alive() for t in workers), 5, "the workers end")


def test_per_node_jobs_all_start_when_nodes_free_up_one_by_one(ssh_config: str) -> None:
    # Six nodes (two a host), each busy with another call for its own time: node 0 is
    # free first, does its job and idles; as the others free up, their starts must reach
    # the nodes still holding their own job, not wake the idle ones again (that left
    # the last node's job undone until the timeout).
    six = make_nodes(["node1", "node2", "node3"] * 2, ssh_config=ssh_config)
    try:
        pauses = (100_000, 1_500_000, 400_000, 800_000, 1_200_000, 1_200_000)
        busy = [distribute_async([n], f"(usleep {us})") for n, us in zip(six, pauses, strict=True)]
        exprs = [f"(+ {i} 1)" for i in range(6)]
        assert distribute(six, *exprs, chunksize="per-node", timeout=10) == (1, 2, 3, 4, 5, 6)
        for call in busy:
            call.result(timeout=10)
    finally:
        for n in six:
            n.close()


def test_wait_idle_returns_once_the_nodes_workers_have_no_work_left() -> None:
    from sshdist_kernel.nodeworkers import run_on, wait_idle

    class StandIn:  # what a worker reads of its node
        name = "stand-in"

    node, release = StandIn(), threading.Event()
    run_on(node, lambda: release.wait(10))  # type: ignore[arg-type]
    assert not wait_idle([node], 0.05)  # type: ignore[list-item]
    release.set()
    assert wait_idle([node], 10)  # type: ignore[list-item]
    assert wait_idle([], 0)


def test_a_call_started_beside_a_running_one_takes_turns_with_it_on_each_node(
    nodes: list[Node],
) -> None:
    from sshdist_kernel.nodeworkers import waiting_work

    first = dist_map_async(nodes, "(lambda (x) (usleep 100000) x)", range(60))  # 2 s of work
    wait_until(lambda: all(waiting_work(n) for n in nodes), 10, "the first call on every node")
    assert dist_map(nodes, "1+", range(6)) == [1, 2, 3, 4, 5, 6]
    # It got in after the first call's running chunks, not after all of its work.
    assert not first.done() and first.progress <= 40, first
    assert first.result(timeout=60) == list(range(60))
