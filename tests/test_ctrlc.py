"""Ctrl-C during evaluations on the main thread: a cancel, never a ``KeyboardInterrupt``
raised inside paramiko.  A Python process evaluates a thousand times under SIGINT at
random moments and every evaluation ends (its value or ``KeyboardInterrupt``), on the
same REPL; and threads evaluating while another closes the node get clear errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

from sshdist_kernel import Node, NodeError, make_node, rrepl_eval
from sshdist_kernel.ctrlc import CtrlCCancels

STRESS = r"""
import json, os, random, signal, sys, threading
from sshdist_kernel import make_node

node = make_node("node1", ssh_config=sys.argv[1])
node.eval("(define kept 'yes)")
stop = threading.Event()
go = threading.Event()  # set once the loop below is under way: none lands before it

def interrupt_at_random():
    rng = random.Random(5)
    go.wait()
    while not stop.wait(rng.uniform(0.0005, 0.006)):
        os.kill(os.getpid(), signal.SIGINT)

seen = {"ok": 0, "interrupted": 0, "wrong": 0}
interrupter = threading.Thread(target=interrupt_at_random, daemon=True)
interrupter.start()
rng = random.Random(3)
for i in range(1000):
    try:
        try:
            go.set()
            pause = rng.choice((0, 300, 2000))
            value = node.eval(f"(begin (usleep {pause}) {i})", timeout=20).value
            seen["ok" if value == i else "wrong"] += 1
        except KeyboardInterrupt:
            seen["interrupted"] += 1
    except KeyboardInterrupt:  # one that landed in this loop's own code
        seen["interrupted"] += 1
stop.set()
while True:  # an interrupt sent as the loop ended lands here, not in the report
    try:
        interrupter.join()
        # Python runs a signal's handler as it finds it when the signal is taken up:
        # ignored from here, one still pending can no longer end the script.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        break
    except KeyboardInterrupt:
        pass
seen["kept"] = node.eval("kept", timeout=20).value
seen["restarts"] = node.restarts
print(json.dumps(seen))
node.close()
"""


def test_a_thousand_evaluations_under_random_ctrl_c_all_end_on_the_same_repl(
    ssh_config: str,
) -> None:
    run = subprocess.run(
        [sys.executable, "-c", STRESS, ssh_config],
        capture_output=True,
        text=True,
        timeout=180,  # a wedged evaluation would hold it here
    )
    assert run.returncode == 0, run.stderr[-3000:]
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen["wrong"] == 0, seen  # no evaluation read another's answer
    assert seen["ok"] + seen["interrupted"] == 1000, seen
    assert seen["interrupted"] >= 20 and seen["ok"] >= 50, seen  # they did land
    assert (seen["kept"], seen["restarts"]) == ("yes", 0), seen


def test_off_the_main_thread_or_under_anothers_handler_nothing_changes() -> None:
    found: list[object] = []

    def elsewhere() -> None:
        with CtrlCCancels(None) as guard:
            found.append(guard.event)

    worker = threading.Thread(target=elsewhere)
    worker.start()
    worker.join()
    assert found == [None]
    previous = signal.signal(signal.SIGINT, lambda *_: None)
    try:
        with CtrlCCancels(None) as guard:
            assert guard.event is None
    finally:
        signal.signal(signal.SIGINT, previous)


def test_evaluations_racing_close_get_node_errors_never_internal_ones(ssh_config: str) -> None:
    for _ in range(10):
        node: Node = make_node("node1", ssh_config=ssh_config)
        errors: list[BaseException] = []

        def evaluate(n: Node = node, errors: list[BaseException] = errors) -> None:
            for i in range(30):
                try:
                    assert n.eval(f"(+ {i} 1)", timeout=10).value == i + 1
                except NodeError as exc:
                    errors.append(exc)
                    return

        threads = [threading.Thread(target=evaluate) for _ in range(3)]
        for t in threads:
            t.start()
        node.close()
        for t in threads:
            t.join(30)
        assert not any(t.is_alive() for t in threads)
        for error in errors:
            assert not type(error).__name__.startswith("_"), repr(error)
            assert "node1" in str(error), error


def test_a_closed_repl_channel_is_a_plain_node_error(ssh_config: str) -> None:
    node = make_node("node1", ssh_config=ssh_config)
    rrepl = node.rrepl
    node.close()
    try:
        rrepl_eval(rrepl, "(+ 1 1)", timeout=5)
    except NodeError as exc:
        assert type(exc) is NodeError, repr(exc)
        assert "is closed" in str(exc)
    else:
        raise AssertionError("a closed channel evaluated")


def test_a_ctrl_c_before_the_source_goes_out_cancels_it_and_raises_nowhere_else(
    node: Node,
) -> None:
    """From the start of ``Node.eval``, not only once the REPL has the source: a Ctrl-C
    in ``on_start`` (where a reopened REPL is announced) lets the callback end, and the
    source is never sent."""
    node.eval("(define kept 'yes)")
    finished: list[bool] = []

    def on_start() -> None:
        os.kill(os.getpid(), signal.SIGINT)
        finished.append(True)  # reached: the Ctrl-C raised nothing here

    try:
        node.eval("(define sent 'yes)", on_start=on_start)
    except KeyboardInterrupt:
        pass
    else:
        raise AssertionError("the Ctrl-C was lost")
    assert finished == [True]
    assert node.eval("kept").value == "yes"
    assert node.eval("(defined? 'sent)").value is False
    assert node.restarts == 0
