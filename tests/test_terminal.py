"""The magics in terminal IPython, through a real pty, as a person sees them: progress
is one line rewritten in place, Ctrl-C prints one line, a background call prints
nothing under the prompt."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from sshdist_kernel.localnodes import LocalNodes

IPYTHON = [
    "-m",
    "IPython",
    "--no-banner",
    "--no-confirm-exit",
    "--simple-prompt",
    "--colors=NoColor",
    "--HistoryManager.enabled=False",
]
PROMPT = r"In \[\d+\]: "


@pytest.fixture
def terminal(local_nodes: LocalNodes, tmp_path: Path) -> Iterator[pexpect.spawn]:
    child = pexpect.spawn(
        sys.executable,
        IPYTHON,
        encoding="utf-8",
        timeout=60,
        dimensions=(40, 160),
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TERM": "xterm"},
    )
    try:
        child.expect(PROMPT)
        enter(child, "%load_ext sshdist_magics")
        enter(child, f"%nodes -o nodes -F {local_nodes.ssh_config} node1 node2 node3")
        yield child
    finally:
        child.sendline("exit")
        child.expect(pexpect.EOF, timeout=30)
        child.close(force=True)


def enter(child: pexpect.spawn, line: str) -> str:
    """Type ``line``; what the terminal showed until the next prompt."""
    child.sendline(line)
    child.expect(PROMPT)
    return child.before


def test_progress_is_one_line_rewritten_in_place(terminal) -> None:
    shown = enter(terminal, "r = %dist_map nodes (lambda (x) (usleep 100000) x) range(45)")
    *drawn, summary = shown.split("\r\x1b[K")
    lines = [d for d in drawn if d.startswith("  dist_map: ")]
    assert len(lines) >= 5, shown  # redrawn many times over about 1.5 s
    assert all("\n" not in line for line in lines)  # never a new line for progress
    counts = [int(re.match(r"  dist_map: (\d+)/45 items", line)[1]) for line in lines]
    assert counts == sorted(counts)
    assert re.match(r"dist_map: 45 item\(s\) on 3 node\(s\), 0 failover\(s\), in ", summary)


def test_ctrl_c_prints_one_line_and_nothing_later(terminal) -> None:
    terminal.sendline("%dist_map nodes (lambda (x) (sleep 1) x) range(60)")
    terminal.expect(r"  dist_map: [1-9]\d*/60 items")  # some items done
    terminal.sendintr()
    terminal.expect(PROMPT)
    last = terminal.before.split("\r\x1b[K")[-1]
    assert re.fullmatch(
        r"(\^C)?(\d+ of 60 items were done: %dist_result --partial gives their values, "
        r"by index\r\n)dist_map interrupted: \d+ of 60 items done on 3 nodes; nodes ready\r\n\r\n",
        last,
    ), repr(last)
    assert "Traceback" not in terminal.before
    # the nodes answer at once, and the stopped call prints nothing at later prompts
    shown = enter(terminal, "%dist_map nodes 1+ range(3)")
    assert "[1, 2, 3]" in shown and "/60" not in shown
    # ...nor while its nodes' workers finish what it gave them (a bounded wait).
    enter(terminal, "from sshdist_kernel.nodeworkers import wait_idle")
    shown = enter(terminal, "wait_idle(nodes, 10)")
    assert "/60" not in shown and "True" in shown


def test_a_background_call_prints_nothing_under_the_prompt(terminal) -> None:
    shown = enter(terminal, "%dist_map --bg -o job nodes (lambda (x) (usleep 200000) x) range(30)")
    assert shown.strip().endswith(
        "dist_map runs in the background on 3 node(s); "
        "%dist_result job waits for it and shows the results"
    )
    # Wait, at the prompt's cell, until the call is done (bounded): nothing shows.
    quiet = enter(terminal, "import concurrent.futures as cf; not cf.wait([job], 30).not_done")
    assert "dist_map" not in quiet and "True" in quiet
    result = enter(terminal, "%dist_result job")
    assert re.search(r"dist_map: 30 item\(s\) on 3 node\(s\), 0 failover\(s\), in ", result)
    assert "29]" in result


def test_ctrl_c_at_a_nodes_read_line_stops_the_cell_and_keeps_the_node(terminal) -> None:
    cell = 'get_ipython().run_cell_magic("with_ssh", "nodes[0]", {!r})'
    enter(terminal, cell.format("(define kept 'yes)"))
    terminal.sendline(cell.format("(read-line)"))
    terminal.expect("node1> ")  # the node asks for a line: a person at the prompt
    terminal.sendintr()
    terminal.expect(PROMPT)
    assert re.search(r"with_ssh interrupted after [\d.]+ s on node1; node ready", terminal.before)
    assert "Traceback" not in terminal.before
    shown = enter(terminal, cell.format("kept"))
    assert "= yes" in shown, shown
