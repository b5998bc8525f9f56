"""A Ctrl-C that lands just before a cell's evaluation stops the cell, one that lands
just after it is dropped; either way the cell gets its reply."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from jupyter_client.blocking.client import BlockingKernelClient

from .conftest import script_kernel

TIMEOUT = 30

# The kernel, sending itself a SIGINT where a Ctrl-C can land by chance: after it has
# published a cell marked BEFORE and before the cell evaluates, and after a cell marked
# AFTER has been evaluated (as its output is kept in the history).
SELF_INTERRUPTING = """
import os
import signal
from ipykernel.kernelbase import Kernel
from sshdist_kernel.history import CellHistory

published = Kernel._publish_execute_input
def publish(self, code, parent, execution_count):
    published(self, code, parent, execution_count)
    if "BEFORE" in code:
        os.kill(os.getpid(), signal.SIGINT)
Kernel._publish_execute_input = publish

stored = CellHistory.store_output
def store_output(self, line, output):
    stored(self, line, output)
    if "AFTER" in output:
        os.kill(os.getpid(), signal.SIGINT)
CellHistory.store_output = store_output

from sshdist_kernel.kernel import main
main()
"""


@pytest.fixture
def self_interrupting(
    ssh_config: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[BlockingKernelClient]:
    with script_kernel(SELF_INTERRUPTING, "sshdist-si", ssh_config, tmp_path, monkeypatch) as kc:
        yield kc


def reply_to(kc: BlockingKernelClient, code: str) -> dict:
    msg_id = kc.execute(code)
    while True:
        reply = kc.get_shell_msg(timeout=TIMEOUT)
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply["content"]


def test_a_ctrl_c_just_after_a_cell_costs_it_nothing(self_interrupting) -> None:
    kc = self_interrupting
    assert reply_to(kc, "(symbol->string 'AFTER)")["status"] == "ok"
    assert reply_to(kc, "(+ 1 2)")["status"] == "ok"


def test_a_ctrl_c_just_before_a_cell_stops_it(self_interrupting) -> None:
    kc = self_interrupting
    reply = reply_to(kc, "(define BEFORE 1)")
    assert (reply["status"], reply["evalue"]) == ("error", "User interrupt")
    assert reply_to(kc, "(+ 1 2)")["status"] == "ok"
    # It never ran: its name is not defined (an error if it is).
    defined = '(if (defined? (string->symbol (string-append "BEF" "ORE"))) (car 1) 0)'
    assert reply_to(kc, defined)["status"] == "ok"
