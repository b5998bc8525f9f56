"""What a cell printed, and every message queued before its reply, is sent before the
reply, though empty flushes no longer wait on the IOPub thread."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from jupyter_client.blocking.client import BlockingKernelClient

from .conftest import start_kernel

TIMEOUT = 60

# A kernel with sshdist's output handling.  A cell ``print TEXT`` prints TEXT to
# sys.stdout; a cell ``busy`` keeps the IOPub thread busy until the reply has been sent
# (at most HOLD seconds), and then has it send a result saying whether it was; a cell
# ``interrupted`` has the IOPub thread send the kernel a SIGINT once the reply waits on it.
PRINTING_KERNEL = """
import os
import signal
import sys
import threading
from ipykernel.kernelapp import IPKernelApp
from ipykernel.kernelbase import Kernel
from jupyter_client.session import Session
from sshdist_kernel.kernel import OUTSTREAM
from sshdist_kernel.outputbarrier import OutputBeforeReply

HOLD = 1.0
reply_sent = threading.Event()
sent = Session.send
def send(self, stream, msg_or_type, *args, **kwargs):
    msg = sent(self, stream, msg_or_type, *args, **kwargs)
    if msg_or_type == "execute_reply":
        reply_sent.set()
    return msg
Session.send = send

waiting = threading.Event()

class Printing(OutputBeforeReply, Kernel):
    implementation = language = "printing"
    implementation_version = "1"
    language_info = {"name": "text"}
    banner = ""

    def _wait_sent(self, sent, deadline):
        waiting.set()
        super()._wait_sent(sent, deadline)

    async def do_execute(self, code, silent, store_history=True, user_expressions=None,
                         allow_stdin=False, *, cell_id=None):
        if code.startswith("print "):
            sys.stdout.set_parent(self.get_parent())  # as IPython's kernel does
            print(code[len("print "):])
        elif code == "busy":
            reply_sent.clear()
            parent = self.get_parent()
            def held():
                before = reply_sent.wait(HOLD)
                self.session.send(self.iopub_socket, "execute_result", {
                    "execution_count": self.execution_count, "metadata": {},
                    "data": {"text/plain": f"reply already sent: {before}"}}, parent=parent)
            self.iopub_thread.schedule(held)
        elif code == "interrupted":
            waiting.clear()
            def interrupt():
                if waiting.wait(HOLD):
                    os.kill(os.getpid(), signal.SIGINT)
            self.iopub_thread.schedule(interrupt)
        return {"status": "ok", "execution_count": self.execution_count,
                "payload": [], "user_expressions": {}}

IPKernelApp.launch_instance(kernel_class=Printing, outstream_class=OUTSTREAM)
"""


@pytest.fixture
def printing_kernel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[BlockingKernelClient]:
    spec = tmp_path / "share" / "jupyter" / "kernels" / "printing"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-c", PRINTING_KERNEL, "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "printing", "language": "text"})
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "share" / "jupyter"))
    km, kc = start_kernel("printing", TIMEOUT)
    yield kc
    kc.stop_channels()
    km.shutdown_kernel(now=True)


def run(kc: BlockingKernelClient, code: str) -> tuple[dict, list[dict]]:
    """The reply to ``code`` and its IOPub messages up to the kernel's going idle."""
    msg_id = kc.execute(code)
    while (reply := kc.get_shell_msg(timeout=TIMEOUT))["parent_header"].get("msg_id") != msg_id:
        pass
    messages = []
    while True:
        msg = kc.get_iopub_msg(timeout=TIMEOUT)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return reply["content"], messages
        messages.append(msg)


def test_what_a_cell_prints_is_sent_before_it_ends(printing_kernel: BlockingKernelClient) -> None:
    for text in ("one", "two"):
        reply, messages = run(printing_kernel, f"print {text}")
        assert reply["status"] == "ok"
        streams = [m["content"] for m in messages if m["msg_type"] == "stream"]
        assert streams == [{"name": "stdout", "text": f"{text}\n"}]


def test_output_queued_before_the_reply_is_sent_before_it(
    printing_kernel: BlockingKernelClient,
) -> None:
    reply, messages = run(printing_kernel, "busy")
    assert reply["status"] == "ok"
    results = [m["content"]["data"]["text/plain"] for m in messages if "data" in m["content"]]
    assert results == ["reply already sent: False"]


def test_a_ctrl_c_as_the_reply_waits_for_the_output_costs_no_reply(
    printing_kernel: BlockingKernelClient,
) -> None:
    kc = printing_kernel
    msg_id = kc.execute("interrupted")
    reply = kc.get_shell_msg(timeout=10)
    while reply["msg_type"] == "kernel_info_reply":  # a slow start's: start_new_kernel
        reply = kc.get_shell_msg(timeout=10)  # asks again each second and leaves the rest
    assert reply["parent_header"]["msg_id"] == msg_id
    assert reply["content"]["status"] == "ok"
    _, messages = run(kc, "print after")
    assert [m["content"]["text"] for m in messages if m["msg_type"] == "stream"] == ["after\n"]
