"""Nodes whose remote side stops answering, ignores interrupts or is abandoned: every
timeout is a bound the caller can count on, and nothing of ours outlives its node."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sshdist_kernel import (
    Node,
    NodeError,
    NodeReplError,
    NodeTimeoutError,
    dist_map,
    make_node,
    node_eval,
    records,
    replinterrupts,
    with_ssh,
)
from sshdist_kernel.replinterrupts import ACK_WAIT, RECOVERY_TRIES

from .conftest import _tick, wait_until


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _running(pid: int) -> bool:
    """Alive and not a zombie (the local nodes' processes are this machine's)."""
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


def _parent(pid: int) -> int:
    stat = _stat(pid)
    assert stat is not None, f"process {pid} is gone"
    return int(stat[1])


def _group(pgid: int) -> list[int]:
    """The live processes of a process group."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None and stat[0] != "Z" and int(stat[3]) == pgid:
                found.append(int(entry.name))
    return found


def test_a_timeout_holds_when_the_remote_guile_is_stopped(node: Node, stopped: list[int]) -> None:
    with_ssh(node, "(define kept 'yes)")
    pid = node.rrepl.pid
    os.kill(pid, signal.SIGSTOP)
    stopped.append(pid)
    started = time.monotonic()
    with pytest.raises(NodeTimeoutError, match="within 1.5 s"):
        node_eval(node, "(+ 1 2)", timeout=1.5)
    assert time.monotonic() - started < 2.5
    os.kill(pid, signal.SIGCONT)  # the background interrupt then finds it
    assert with_ssh(node, "kept", timeout=10).value == "yes"
    assert node.restarts == 0


def test_a_stopped_guile_is_given_up_so_the_next_call_gets_a_fresh_repl_in_its_time(
    node: Node, stopped: list[int]
) -> None:
    with_ssh(node, "(define kept 'yes)")
    pid = node.rrepl.pid
    os.kill(pid, signal.SIGSTOP)
    stopped.append(pid)
    with pytest.raises(NodeTimeoutError, match="within 2 s"):
        node_eval(node, "(+ 1 2)", timeout=2)
    # It never acknowledges the interrupt: the REPL is given up, and the next call,
    # within its own timeout, runs on a fresh one (without the definition).
    assert node_eval(node, "(+ 40 2)", timeout=5).value == 42
    assert node.restarts == 1
    assert "did not acknowledge an interrupt within 1.5 s" in node.last_loss
    with pytest.raises(NodeReplError, match="kept"):
        with_ssh(node, "kept", timeout=5)


def test_dist_map_works_around_a_stopped_node_and_keeps_its_timeout(
    ssh_config: str, stopped: list[int]
) -> None:
    nodes = [make_node(name, ssh_config=ssh_config) for name in ("node1", "node2")]
    try:
        os.kill(nodes[0].rrepl.pid, signal.SIGSTOP)
        stopped.append(nodes[0].rrepl.pid)
        started = time.monotonic()
        result = dist_map(nodes, "(lambda (x) (* x x))", range(10), timeout=30)
        assert result == [x * x for x in range(10)]
        assert time.monotonic() - started < 4  # a copy, not the 30 s timeout
        assert all(m.from_node is nodes[0] and m.reason == "straggler" for m in result.moves)
        # Its guile never acknowledged the interrupt of the copied chunk: its REPL was
        # given up, and it works again on a fresh one.
        assert dist_map(nodes[:1], "(lambda (x) (* x x))", range(3), timeout=10) == [0, 1, 4]
        assert nodes[0].restarts == 1
        # Alone, a stopped node fails the call within its timeout.
        os.kill(nodes[0].rrepl.pid, signal.SIGSTOP)
        stopped.append(nodes[0].rrepl.pid)
        started = time.monotonic()
        with pytest.raises(NodeError):
            dist_map(nodes[:1], "(lambda (x) (* x x))", range(10), timeout=1)
        assert time.monotonic() - started < 2
    finally:
        for n in nodes:
            n.close()


@pytest.mark.usefixtures("quick_probes")
def test_a_silent_peer_is_dropped_and_the_next_call_reconnects(
    node: Node, stopped: list[int]
) -> None:
    """The node's sshd session process stopped: TCP stays open and nothing answers."""
    with_ssh(node, "(define kept 'yes)")
    sshd = _parent(node.rrepl.pid)
    os.kill(sshd, signal.SIGSTOP)
    stopped.append(sshd)
    started = time.monotonic()
    with pytest.raises(NodeError):
        node_eval(node, "(+ 1 2)", timeout=2)
    assert time.monotonic() - started < 3
    started = time.monotonic()
    result = with_ssh(node, "(+ 40 2)", timeout=10)
    assert result.value == 42
    assert time.monotonic() - started < 10
    assert node.restarts == 1
    assert "stopped answering" in node.last_loss or "within 2 s" in node.last_loss
    with pytest.raises(NodeReplError, match="kept"):  # a fresh REPL: definitions lost
        with_ssh(node, "kept", timeout=10)


@pytest.mark.usefixtures("quick_probes")
def test_a_keepalive_cut_short_by_the_calls_timeout_is_a_timeout_not_a_drop(
    node: Node, stopped: list[int]
) -> None:
    """The keepalive asked at 0.5 s of silence has only the call's last 0.5 s: no reply
    in that time says the call's time is up, not that the connection is gone (a busy
    machine answers late: the connection was dropped, and the REPL's definitions lost,
    under load)."""
    with_ssh(node, "(define kept 'yes)")
    sshd = _parent(node.rrepl.pid)
    os.kill(sshd, signal.SIGSTOP)  # nothing answers for now, keepalives included
    stopped.append(sshd)
    with pytest.raises(NodeTimeoutError, match="within 1 s"):
        node_eval(node, "(+ 1 2)", timeout=1)
    os.kill(sshd, signal.SIGCONT)
    assert with_ssh(node, "(+ 1 1)", timeout=10).value == 2
    assert node.restarts == 0, node.last_loss
    assert with_ssh(node, "kept", timeout=10).value == "yes"


@pytest.mark.usefixtures("quick_probes")
def test_a_wait_without_timeout_notices_a_silent_peer(node: Node, stopped: list[int]) -> None:
    sshd = _parent(node.rrepl.pid)
    os.kill(sshd, signal.SIGSTOP)
    stopped.append(sshd)
    started = time.monotonic()
    with pytest.raises(NodeError, match="stopped answering"):
        node_eval(node, "(+ 1 2)", timeout=None)
    # the silence, then the time a keepalive has to be answered
    assert time.monotonic() - started < records.PROBE_AFTER + records.PROBE_DEADLINE + 2


class Firewall:
    """Drops every TCP packet to or from a port on this machine, with nft rules in a
    table of its own (nothing else on the machine is touched)."""

    def __init__(self) -> None:
        self.table = f"sshdist_test_{os.getpid()}"

    def _nft(self, *words: str, check: bool = True) -> None:
        subprocess.run(["nft", *words], check=check, timeout=10, capture_output=True)

    def drop(self, port: int) -> None:
        self._nft("add", "table", "inet", self.table)
        hook = "{ type filter hook input priority 0; }"
        self._nft("add", "chain", "inet", self.table, "in", hook)
        for direction in ("sport", "dport"):
            self._nft("add", "rule", "inet", self.table, "in", "tcp", direction, str(port), "drop")

    def allow(self) -> None:
        self._nft("delete", "table", "inet", self.table, check=False)


@pytest.fixture
def firewall() -> Iterator[Firewall]:
    if os.geteuid() != 0 or shutil.which("nft") is None:
        pytest.skip("dropping traffic needs root and nft (Debian's nftables)")
    probe = subprocess.run(["nft", "list", "tables"], capture_output=True, timeout=10)
    if probe.returncode != 0:
        pytest.skip(f"nft cannot change this machine's rules: {probe.stderr.decode().strip()}")
    wall = Firewall()
    yield wall
    wall.allow()


@pytest.mark.usefixtures("quick_probes")
def test_dropped_traffic_is_noticed_and_the_next_call_reconnects(
    node: Node, firewall: Firewall
) -> None:
    with_ssh(node, "(define kept 'yes)")
    firewall.drop(node.session.port)
    started = time.monotonic()
    with pytest.raises(NodeError):
        node_eval(node, "(+ 1 2)", timeout=4)
    assert time.monotonic() - started < 5
    firewall.allow()
    started = time.monotonic()
    assert with_ssh(node, "(+ 40 2)", timeout=15).value == 42
    assert time.monotonic() - started < 15
    assert node.restarts == 1


IGNORES_SIGINT = "(begin (sigaction SIGINT SIG_IGN) (let loop () (loop)))"
UNSTOPPABLE = "(call-with-blocked-asyncs (lambda () (let loop () (loop))))"


def test_an_abandoned_evaluation_that_cannot_be_interrupted_dies_with_its_node(
    node: Node,
) -> None:
    pid = node.rrepl.pid
    with pytest.raises(NodeTimeoutError, match="within 1 s"):
        node_eval(node, UNSTOPPABLE, timeout=1)
    node.close()
    wait_until(lambda: not _running(pid), timeout=10, what="the abandoned guile to end")


def test_children_that_ignore_every_polite_signal_die_with_their_node(node: Node) -> None:
    pid = node.rrepl.pid
    with pytest.raises(NodeTimeoutError):
        node_eval(node, "(system \"trap '' INT TERM; sleep 1000; sleep 1000\")", timeout=1)
    assert len(_group(pid)) >= 2  # guile and its shell (and the sleep)
    node.close()
    wait_until(lambda: not _group(pid), timeout=10, what="the REPL's process group to end")


def test_an_evaluation_blocked_opening_a_fifo_dies_with_its_node(
    node: Node, tmp_path: Path
) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    pid = node.rrepl.pid
    with pytest.raises(NodeTimeoutError):
        node_eval(node, f'(open-input-file "{fifo}")', timeout=1)
    node.close()
    wait_until(lambda: not _running(pid), timeout=10, what="the blocked guile to end")


def test_code_that_ignores_sigint_is_still_interrupted(node: Node) -> None:
    with_ssh(node, "(define kept 'yes)")
    # Interrupted within the half second the call gives it after its timeout, or (on a
    # busy machine: seen once) later, before the next call runs.
    interrupted = "it was interrupted, and the REPL kept|it is being interrupted; the next"
    with pytest.raises(NodeTimeoutError, match=interrupted):
        node_eval(node, IGNORES_SIGINT, timeout=1)
    assert with_ssh(node, "kept", timeout=5).value == "yes"
    assert node.restarts == 0


@pytest.mark.usefixtures("quick_recovery")
def test_a_repl_that_cannot_be_stopped_is_replaced_and_says_so(node: Node) -> None:
    with_ssh(node, "(define kept 'yes)")
    pid = node.rrepl.pid
    with pytest.raises(NodeTimeoutError):
        node_eval(node, UNSTOPPABLE, timeout=0.5)
    # Three interrupts go unanswered; the REPL is then closed, and the next call
    # (which waits for that) gets a fresh one.
    started = time.monotonic()
    with pytest.raises(NodeReplError, match="kept"):
        with_ssh(node, "kept", timeout=20)
    assert time.monotonic() - started < ACK_WAIT + RECOVERY_TRIES * replinterrupts.RECOVERY_WAIT + 3
    assert node.restarts == 1
    assert "did not stop after 3 interrupts" in node.last_loss
    wait_until(lambda: not _running(pid), timeout=10, what="the old guile to end")


def test_a_repl_that_died_while_idle_is_reopened_by_the_next_call(node: Node) -> None:
    with_ssh(node, "(define kept 'yes)")
    channel = node.rrepl.channel
    os.kill(node.rrepl.pid, signal.SIGKILL)
    wait_until(channel.exit_status_ready, timeout=10, what="the channel to report the death")
    assert with_ssh(node, "(+ 1 1)", timeout=10).value == 2
    assert node.restarts == 1
    assert "ended" in node.last_loss


def test_a_forked_child_never_answers_for_the_repl(node: Node) -> None:
    assert with_ssh(node, "(primitive-fork)", timeout=10).value > 0  # the parent's answer
    assert with_ssh(node, "(+ 1 2)").value == 3
    child_returns = "(if (zero? (primitive-fork)) (car '()) (begin (usleep 300000) 'parent))"
    assert with_ssh(node, child_returns, timeout=10).value == "parent"
    assert with_ssh(node, "(+ 1 3)").value == 4
    assert node.restarts == 0


def test_code_that_closes_or_redirects_fd_1_and_2_leaves_the_next_request_whole(
    node: Node,
) -> None:
    with_ssh(node, '(close-fdes 1) (close-fdes 2) (dup2 (open-fdes "/dev/null" O_RDONLY) 0)')
    result = with_ssh(node, '(system "echo out; echo err >&2; cat")', timeout=10)
    assert (result.value, result.output, result.error_output) == (0, "out\n", "err\n")
    with_ssh(node, '(dup2 (open-fdes "/dev/null" O_WRONLY) 1)')
    assert with_ssh(node, '(system "echo back")').output == "back\n"


def test_an_interrupt_stops_a_loop_over_system(node: Node) -> None:
    """system ignores SIGINT while it waits: the interrupt lands when it returns."""
    with_ssh(node, "(define kept 'yes)")
    # The error says what it saw after waiting 0.5 s for the interrupt to land; on a
    # loaded machine that may be "being interrupted": either way the loop stops.
    with pytest.raises(NodeTimeoutError, match="it (was|is being) interrupted"):
        node_eval(node, '(for-each (lambda (i) (system "sleep 0.3")) (iota 100))', timeout=1)
    assert node.settle(10) == "ready"
    assert with_ssh(node, "kept", timeout=10).value == "yes"
    assert node.restarts == 0


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), "3"])
def test_a_timeout_that_is_no_bound_is_refused_before_anything_is_sent(
    node: Node, timeout: object
) -> None:
    with_ssh(node, "(define x 1)")
    with pytest.raises(ValueError, match="timeout must be a positive number of seconds"):
        node_eval(node, "(set! x 100)", timeout=timeout)
    assert with_ssh(node, "x").value == 1
    assert with_ssh(node, "(+ x 1)", timeout=float("inf")).value == 2


def test_a_slow_output_callback_does_not_stretch_the_bound(node: Node) -> None:
    started = time.monotonic()
    with pytest.raises(NodeTimeoutError):
        node_eval(
            node,
            '(system "for i in $(seq 40); do echo line $i; sleep 0.01; done")',
            timeout=1,
            # The slowness under test, not a wait: each line's callback takes 0.2 s.
            on_output=lambda stream, text: _tick.wait(0.2),
        )
    assert time.monotonic() - started < 2


def test_background_jobs_of_an_abandoned_evaluation_die_with_it(node: Node) -> None:
    pid = node.rrepl.pid
    with pytest.raises(NodeTimeoutError):
        node_eval(node, '(begin (system "sleep 111 &") (sleep 100))', timeout=1)
    assert len(_group(pid)) >= 2
    node.close()
    wait_until(lambda: not _group(pid), timeout=10, what="the REPL's process group to end")


def test_ctrl_c_during_dist_map_stops_the_nodes(ssh_config: str) -> None:
    nodes = [make_node(name, ssh_config=ssh_config) for name in ("node1", "node2")]
    try:
        for n in nodes:
            with_ssh(n, "(define kept 'yes)")
        # To the process, as a terminal's Ctrl-C is: the kernel hands it to the main
        # thread, whose wait it wakes.  (signal.raise_signal from the timer's thread
        # went to that thread alone: the main thread slept on until the call ended by
        # itself, 40 s of (sleep 20) later, and the test took a minute.)
        timer = threading.Timer(1, lambda: os.kill(os.getpid(), signal.SIGINT))
        started = time.monotonic()
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            dist_map(nodes, "(lambda (x) (sleep 20) x)", [1, 2, 3, 4])
        timer.join()
        assert time.monotonic() - started < 15  # stopped, not waited out (2 x 20 s)
        for n in nodes:  # ready again within a moment, definitions kept
            assert with_ssh(n, "kept", timeout=5).value == "yes"
    finally:
        for n in nodes:
            n.close()


def test_a_request_sent_over_a_running_one_waits_and_the_repl_still_dies_with_its_node(
    node: Node,
) -> None:
    """Sent by hand on the channel, past the client's lock: the loop queues it, and
    still sees its input end."""
    pid = node.rrepl.pid
    channel = node.rrepl.channel
    loop = b'(begin (display "go\\n") (let loop () (loop)))'
    channel.sendall(b"e%d\n" % len(loop) + loop)
    wait_until(channel.recv_ready, timeout=10, what="the loop to start")  # its "go"
    channel.sendall(b"e7\n(+ 1 2)")  # before the end of input, in the same stream
    node.close()
    wait_until(lambda: not _running(pid), timeout=10, what="the busy guile to end")


def test_a_recovery_that_fails_oddly_gives_the_repl_up_instead_of_leaving_it_out_of_step(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    rrepl = node.rrepl

    def broken_interrupt() -> None:
        raise RuntimeError("something unforeseen")

    monkeypatch.setattr(rrepl, "interrupt", broken_interrupt)
    with pytest.raises(NodeTimeoutError):
        node_eval(node, "(let loop () (loop))", timeout=0.5)
    assert with_ssh(node, "(+ 1 2)", timeout=10).value == 3  # not the loop's answer
    assert node.restarts == 1


def test_an_interrupt_does_not_reach_the_next_evaluation(node: Node) -> None:
    """Once an interrupted evaluation has answered, nothing of its interrupt is left:
    a late SIGINT or wake-up would end the next (usleep 400000) at once."""
    for _ in range(4):
        with pytest.raises(NodeTimeoutError):
            with_ssh(node, "(sleep 100)", timeout=0.5)
        started = time.monotonic()
        assert with_ssh(node, "(usleep 400000)", timeout=10).value == 0
        assert time.monotonic() - started >= 0.39
