"""Ctrl-C at random moments, a thousand cells long: every cell gets its reply (its value
or a "User interrupt"), the kernel never wedges and the node keeps its REPL.

A thread inside the kernel sends it SIGINT every few milliseconds, so interrupts land
everywhere: in paramiko's reads and sends, in zmq, between cells, in the reply.  Raised
as ``KeyboardInterrupt`` inside paramiko, one could leave a lock held and wedge the
kernel (it did, twice, in a stress like this one).  The kernel runs over TCP and over
Unix sockets (``--transport=ipc``).

The client reads each cell's IOPub messages as it goes, as a front end does.  IOPub is
a PUB socket: what a subscriber leaves unread past ZeroMQ's high-water marks (1000
messages each side) and the OS's socket buffers is dropped.  Over TCP on loopback
those buffers held the 4000 messages of a thousand unread cells; a Unix socket's hold
a few: over IPC the messages past the first 2000 were lost, the last cell's among them,
and its wait for them looked like a wedge (a plain ipykernel, with no Ctrl-C at all,
loses them the same way)."""

from __future__ import annotations

import random
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from jupyter_client.blocking.client import BlockingKernelClient

from .conftest import script_kernel

REPLY_WAIT = 30  # seconds: a cell's reply later than this is a wedge
CELLS = 1000

INTERRUPTING = """
import os
import random
import signal
import threading

flag = os.environ["SSHDIST_TEST_INTERRUPTS"]  # interrupts while this file exists

def interrupt_at_random():
    rng = random.Random(7)
    pace = threading.Event()  # never set: its wait is the interrupts' pacing
    while not pace.wait(rng.uniform(0.001, 0.012)):
        if os.path.exists(flag):
            os.kill(os.getpid(), signal.SIGINT)

threading.Thread(target=interrupt_at_random, daemon=True).start()

from sshdist_kernel.kernel import main
main()
"""


@pytest.fixture(params=["tcp", "ipc"])
def interrupted_kernel(
    request: pytest.FixtureRequest,
    ssh_config: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[BlockingKernelClient, Path]]:
    flag = tmp_path / "interrupting"
    monkeypatch.setenv("SSHDIST_TEST_INTERRUPTS", str(flag))
    # A short folder for the sockets: a socket's path has at most 107 bytes (tmp_path's
    # is long).
    sockets = tempfile.mkdtemp(prefix="sshdist-ipc-")
    transport = {"transport": "ipc", "ip": f"{sockets}/kernel"} if request.param == "ipc" else {}
    try:
        with script_kernel(
            INTERRUPTING, "sshdist-ri", ssh_config, tmp_path, monkeypatch, **transport
        ) as kc:
            yield kc, flag
    finally:
        shutil.rmtree(sockets, ignore_errors=True)


def reply_to(kc: BlockingKernelClient, code: str) -> dict:
    """The cell's reply, once its IOPub messages are read up to its idle status."""
    msg_id = kc.execute(code)
    while True:
        reply = kc.get_shell_msg(timeout=REPLY_WAIT)  # queue.Empty: a wedge
        if reply["parent_header"].get("msg_id") == msg_id:
            break
    while True:
        msg = kc.get_iopub_msg(timeout=REPLY_WAIT)
        if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "status":
            if msg["content"]["execution_state"] == "idle":
                return reply["content"]


def outputs_of(kc: BlockingKernelClient, code: str) -> list[str]:
    """What a cell showed: its streams' texts and its result's text."""
    msg_id = kc.execute(code)
    shown = []
    while True:
        msg = kc.get_iopub_msg(timeout=REPLY_WAIT)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            shown.append(content["text"])
        elif kind == "execute_result":
            shown.append(content["data"]["text/plain"])
        elif kind == "status" and content["execution_state"] == "idle":
            return shown


def test_a_thousand_cells_under_random_ctrl_c_all_get_their_reply(interrupted_kernel) -> None:
    kc, flag = interrupted_kernel
    assert reply_to(kc, "(define kept 'yes)")["status"] == "ok"
    rng = random.Random(11)
    seen: Counter[str] = Counter()
    flag.touch()
    try:
        for i in range(CELLS):
            pause = rng.choice((0, 0, 500, 2000, 5000))  # microseconds of work
            reply = reply_to(kc, f"(begin (usleep {pause}) (+ {i} 1))")
            if reply["status"] == "ok":
                seen["ok"] += 1
            else:
                assert (reply["ename"], reply["evalue"]) == ("signal", "User interrupt"), reply
                seen["interrupted"] += 1
    finally:
        flag.unlink()
    # The interrupts did land: 48 to 88 cells of 1,000 seen on two cores, fewer when the
    # machine is busy (a Ctrl-C between requests is ignored, and one while the reply is
    # sent dropped: interruptwindow); the bound only says the stress was one.
    assert seen["interrupted"] >= CELLS // 50, seen
    assert seen["ok"] >= CELLS // 10, seen
    # The node kept its REPL and its definitions through all of it.
    shown = outputs_of(kc, "kept")
    assert shown and shown[-1].endswith("= yes"), shown
    assert not any("replaced" in text for text in shown), shown
