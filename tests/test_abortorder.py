"""After a failed cell, the cells queued behind it are aborted, and a cell sent once
the error reply arrived is not, however late ipykernel gets to its abort."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.blocking.client import BlockingKernelClient

from sshdist_kernel.abortorder import AbortBeforeReply

from .conftest import script_kernel

TIMEOUT = 60

# The kernel, each failed cell's reply followed by a wait (bounded) until the next
# request has reached its main thread, before ipykernel goes on to its abort: what a
# busy machine's scheduling may do, made certain.
SLOW_AFTER_ERROR_REPLY = """
import zmq
from ipykernel.kernelapp import IPKernelApp
from jupyter_client.session import Session
sent = Session.send
def send(self, stream, msg_or_type, content=None, *args, **kwargs):
    msg = sent(self, stream, msg_or_type, content, *args, **kwargs)
    if msg_or_type == "execute_reply" and (content or {}).get("status") == "error":
        manager = IPKernelApp.instance().kernel.shell_channel_thread.manager
        incoming = manager.get_shell_channel_to_subshell_pair(None).to_stream
        incoming.socket.poll(10_000, zmq.POLLIN)
        # Polling took the socket's edge: its stream would not hear of the message.
        incoming.io_loop.add_callback(incoming._handle_events, incoming.socket, 0)
    return msg
Session.send = send
from sshdist_kernel.kernel import main
main()
"""


@pytest.fixture
def slow_kernel(
    ssh_config: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[BlockingKernelClient]:
    script = SLOW_AFTER_ERROR_REPLY
    with script_kernel(script, "sshdist-slow", ssh_config, tmp_path, monkeypatch) as kc:
        yield kc


def reply_to(kc: BlockingKernelClient, msg_id: str) -> dict:
    while True:
        reply = kc.get_shell_msg(timeout=TIMEOUT)
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply["content"]


def test_a_cell_sent_when_the_error_reply_arrives_runs(slow_kernel: BlockingKernelClient) -> None:
    kc = slow_kernel
    for _ in range(2):
        assert reply_to(kc, kc.execute("(car 1)"))["status"] == "error"
        # At once, as a front end may: not waiting for the kernel to go idle.
        reply = reply_to(kc, kc.execute("(+ 1 2)"))
        assert reply["status"] == "ok"


def test_cells_queued_behind_a_failed_one_are_still_aborted(
    slow_kernel: BlockingKernelClient,
) -> None:
    kc = slow_kernel
    # The failing cell takes half a second, so the next has reached the kernel however
    # loaded the machine: queued behind it (one still on its way may run, as with
    # ipykernel; seen once under the parallel suite when the cell failed at once).
    failing = kc.execute("(begin (usleep 500000) (car 1))")
    queued = kc.execute("(+ 1 2)")
    assert reply_to(kc, failing)["status"] == "error"
    assert reply_to(kc, queued)["status"] == "aborted"
    assert reply_to(kc, kc.execute("(+ 1 2)"))["status"] == "ok"


class Recording:
    """Stands for ipykernel's Kernel: records the aborts asked of it."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    def finish_metadata(self, parent: dict, metadata: dict, reply_content: dict) -> dict:
        return metadata

    def _abort_queues(self, subshell_id: str | None = None) -> None:
        self.events.append(("abort", subshell_id))


class Kernelish(AbortBeforeReply, Recording):
    pass


def request(silent: bool = False, stop_on_error: bool = True) -> dict:
    header = {"msg_type": "execute_request", "subshell_id": "s1"}
    return {"header": header, "content": {"silent": silent, "stop_on_error": stop_on_error}}


def test_no_abort_for_a_good_cell_a_silent_one_or_without_stop_on_error() -> None:
    for parent, status in ((request(), "ok"), (request(silent=True), "error")):
        kernel = Kernelish()
        kernel.finish_metadata(parent, {}, {"status": status})
        assert kernel.events == []
    kernel = Kernelish()
    kernel.finish_metadata(request(stop_on_error=False), {}, {"status": "error"})
    assert kernel.events == []
    kernel.finish_metadata(request(), {}, {"status": "error"})
    kernel._abort_queues("s1")  # ipykernel's own, after the reply: already begun
    kernel._abort_queues("s2")  # any other abort still happens
    assert kernel.events == [("abort", "s1"), ("abort", "s2")]
