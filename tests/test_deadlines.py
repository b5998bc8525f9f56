"""Whole-call timeouts on one watcher thread: callbacks run once their instant passes,
cancelled ones never; many short calls with a timeout start no thread each."""

from __future__ import annotations

import threading
import time

from sshdist_kernel import Node, distribute
from sshdist_kernel.deadlines import call_at, pending

from .conftest import wait_until


def test_a_deadline_runs_its_callback_once_it_passes_and_a_cancelled_one_never() -> None:
    fired: list[str] = []
    now = time.monotonic()
    call_at(now + 0.2, lambda: fired.append("late"))
    call_at(now + 0.05, lambda: fired.append("early"))
    dropped = call_at(now + 0.1, lambda: fired.append("cancelled"))
    dropped.cancel()
    wait_until(lambda: len(fired) == 2, 5, "both deadlines")
    assert fired == ["early", "late"]
    assert time.monotonic() - now >= 0.2


def test_many_cancelled_deadlines_do_not_pile_up() -> None:
    far = time.monotonic() + 3600
    for _ in range(1000):
        call_at(far, lambda: None).cancel()
    assert pending() == 0


def test_calls_with_a_timeout_start_no_thread_each(shared_node: Node, monkeypatch) -> None:
    distribute([shared_node], "(+ 1 1)", timeout=30)  # the node's worker, the watcher
    started: list[str] = []
    start = threading.Thread.start

    def counted(thread: threading.Thread) -> None:
        started.append(thread.name)
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", counted)
    for i in range(100):
        assert distribute([shared_node], f"(+ {i} 1)", timeout=30) == (i + 1,)
    assert started == []
    assert pending() == 0
