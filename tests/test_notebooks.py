"""The notebooks, executed by nbclient as Jupyter would, against local nodes."""

from __future__ import annotations

import asyncio
import os
import queue
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from sshdist_kernel import kernelspec
from sshdist_kernel.localnodes import LocalNodes

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


@pytest.fixture
def node1_kernel(
    local_nodes: LocalNodes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The kernelspec the tour names, installed in this test's own Jupyter path."""
    kernelspec.install("node1", prefix=str(tmp_path), ssh_config=str(local_nodes.ssh_config))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "share" / "jupyter"))
    yield "sshdist-node1"


def shown(cell: nbformat.NotebookNode) -> list[str]:
    out = []
    for o in cell.outputs:
        if o.output_type == "stream":  # consecutive writes show as one text, as in Jupyter
            if out and out[-1].startswith("stream:"):
                out[-1] += o.text
            else:
                out.append("stream:" + o.text)
        elif o.output_type == "execute_result":
            out.append(o.data["text/plain"])
        elif o.output_type == "error":
            out.append(f"{o.ename}: {o.evalue}")
    return [o.removeprefix("stream:") for o in out]


def test_the_remote_guile_kernel_tour(node1_kernel: str) -> None:
    nb = nbformat.read(NOTEBOOKS / "remote_guile_kernel.ipynb", as_version=4)
    NotebookClient(nb, kernel_name=node1_kernel, timeout=60, startup_timeout=60).execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert shown(code[0]) == ["$1 = 3"]
    assert shown(code[1]) == ["$2 = (0 1 4 9 16 25)"]
    assert shown(code[2]) == ["printed on the node\n", '$3 = 144\n$4 = "and a second value"']
    assert shown(code[3]) == ["$5 = (3 (0 1 4 9 16 25))"]
    assert shown(code[4])[0].startswith("wrong-type-arg: In procedure car")
    assert shown(code[5]) == ['$6 = "STILL HERE"']
    assert "ECMAScript" in shown(code[6])[0]
    assert shown(code[7]) == ["$7 = 42"]
    assert shown(code[9])[-1] == "$9 = (tour)"
    assert code[7].outputs[0].metadata["sshdist"]["language"] == "ecmascript"


def execute_python_notebook(name: str) -> list[nbformat.NotebookNode]:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(nb, kernel_name="python3", timeout=120, startup_timeout=60).execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    code[0].widget_state = (
        nb.metadata.get("widgets", {})
        .get("application/vnd.jupyter.widget-state+json", {})
        .get("state", {})
    )
    return code


def widget_values(state: dict, model: str) -> list[object]:
    """The ``value`` of every widget of one model (``LabelModel``...) the notebook kept."""
    return [w["state"].get("value") for w in state.values() if w.get("model_name") == model]


def test_the_dist_map_demo() -> None:
    code = execute_python_notebook("dist_map_demo.ipynb")
    assert shown(code[0])[0].startswith("3 node(s) ready in ")
    assert (
        shown(code[1])[0]
        == '$1 = "hello, notebook"\n[node1: module (guile-user), language scheme]\n'
    )
    assert shown(code[2]) == ["'HELLO, NOTEBOOK'"]
    assert shown(code[3])[-1] == "(3, 1267650600228229401496703205376, 'GUILE')"
    assert shown(code[4])[-1] == "([0, 1, 4, 9, 16], 20)"
    # A call shorter than a second shows no progress rows, only its summary line.
    assert not any(o.output_type == "display_data" for o in code[4].outputs)
    # 20 quick items may be done before the third node asks for any: the scheduler decides.
    assert re.match(
        r"dist_map: 20 item\(s\) on [123] node\(s\), 0 failover\(s\), in ", shown(code[4])[0]
    )
    assert re.search(
        r"same results: True; 1 node [\d.]+ s, 3 nodes [\d.]+ s: speedup [\d.]+",
        "".join(shown(code[5])),
    )
    # What the nodes printed, grouped by node after the summary, then the result.
    printed, result = shown(code[6])
    assert printed.startswith("dist_map: 6 item(s) on ")
    assert re.search(r"^\[stdout:node\d\]$", printed, re.MULTILINE)
    lines = [line for line in printed.splitlines()[1:] if not line.startswith("[stdout:")]
    assert sorted(lines) == sorted(f"{x} squared is {x * x}" for x in range(6))
    assert result == "[0, 1, 4, 9, 16, 25]"


def test_the_failover_demo() -> None:
    code = execute_python_notebook("failover_demo.ipynb")
    out = "".join(shown(code[1]))
    assert "  node2 failed: " in out and "moved from node2 to node" in out
    # The rows gave way to the call's summary, which starts with its summary line: one
    # failed node is one failover, however many chunks it held and gave back.
    (summary,) = [o.data for o in code[1].outputs if o.output_type == "display_data"]
    assert "application/vnd.jupyter.widget-view+json" not in summary
    assert re.match(
        r"dist_map: 60 item\(s\) on 3 node\(s\), 1 failover\(s\) \([1-9]\d* jobs?, "
        r"[1-9]\d* items? moved\), in ",
        summary["text/plain"],
    )
    assert re.search(r"^  node2  \d+ items? in \d+ jobs?, FAILED: ", summary["text/plain"], re.M)
    assert "complete and in order: True" in out
    failures, moves = eval(shown(code[2])[0])  # noqa: S307 - the notebook's own repr
    assert len(failures) == 1 and failures[0].startswith("node2: ")
    # Which job node2 held depends on the scheduler: whichever chunk it had.
    assert moves and re.match(r"job \d+ moved from node2 to node[13]$", moves[0])
    # The fresh REPL says the old one was replaced and its definitions are gone.
    replaced, value = shown(code[3])[0].split("\n", 1)
    assert replaced.startswith("[the REPL on node2 was replaced by a fresh one (")
    assert replaced.endswith("definitions made before are lost]")
    assert value.startswith("$1 = 3")
    # The call ran for more than a second, so it showed per-node progress rows.
    labels = [str(v) for v in widget_values(code[0].widget_state, "LabelModel")]
    moved = r"\d+ items?, FAILED: jobs? \d+(, \d+)* moved to node[13](, node[13])?"
    assert any(re.fullmatch(moved, v) for v in labels)
    assert sum(1 for v in labels if re.fullmatch(r"\d+ items?, finished job \d+", v)) >= 2
    # The total's row, at the end: all items, the time and the rate.
    assert any(re.fullmatch(r"60/60 items in [\d.]+ s, [\d.]+ items/s", v) for v in labels)
    # The bars count items: the total's reached 60, and the nodes' rows add up to it.
    bars = {
        w["state"]["description"]: w["state"]["value"]
        for w in code[0].widget_state.values()
        if w.get("model_name") == "IntProgressModel"
    }
    assert bars["all"] == 60
    assert bars["node1"] + bars["node2"] + bars["node3"] == 60


def test_the_node_loadavg_notebook() -> None:
    code = execute_python_notebook("node_loadavg.ipynb")
    widget = [o for o in code[1].outputs if o.output_type == "display_data"]
    assert widget and "application/vnd.jupyter.widget-view+json" in widget[0].data
    busy = "".join(shown(code[2])).splitlines()
    rows = [line for line in busy if line.startswith("node")]
    assert len(rows) == 4 and rows[0].startswith("node ")  # header and three nodes
    assert all(" running " in r for r in rows[1:])
    assert all(r.split()[2].startswith("3.") for r in rows[1:])  # Guile's version
    after = [line for line in "".join(shown(code[3])).splitlines() if line.startswith("node")]
    assert " running " in after[1] and " running " in after[2]
    assert after[3].startswith("node3") and " stopped " in after[3]


def test_the_live_calls_notebook() -> None:
    code = execute_python_notebook("live_calls.ipynb")
    # --bg: the widget at once, the cell after it runs while the call works.  (Whether
    # nbclient saw the summary replace it depends on the cell running when the call's
    # drawer sent it: the browser test and test_saved_outputs check that.)  Its text is
    # never the widget's repr.
    started = [o for o in code[1].outputs if o.output_type == "display_data"]
    assert started and not started[0].data["text/plain"].startswith("VBox(")
    assert re.fullmatch(r"meanwhile: \d+ of 30 items done, running: True\n", shown(code[2])[0])
    assert shown(code[3]) == ["True"]  # job.cancel()
    assert re.fullmatch(
        r"CancelledError: dist_map cancelled: \d+ of 30 items done on 3 nodes; nodes ready",
        shown(code[4])[0],
    )
    assert shown(code[6]) == ["(3, 'DONE')"]  # await forms
    printed, result = shown(code[7])
    assert printed.startswith("distribute: 2 expression(s) on ")
    # Each form's text ends its own line, even when one node takes both.
    assert {"from the first form", "from the second"} <= set(printed.splitlines())
    assert result == "(3, 'DONE')"
    buttons = [
        w["state"] for w in code[0].widget_state.values() if w.get("model_name") == "ButtonModel"
    ]
    # (Updates drawn after a cell ended reach JupyterLab, not nbclient's saved state: the
    # buttons turning disabled is checked in test_background and the browser test.)
    assert [b["description"] for b in buttons] == ["Cancel", "Cancel"]


def test_the_rich_output_tour(node1_kernel: str) -> None:
    nb = nbformat.read(NOTEBOOKS / "rich_output.ipynb", as_version=4)
    NotebookClient(nb, kernel_name=node1_kernel, timeout=60, startup_timeout=60).execute()
    code = [c for c in nb.cells if c.cell_type == "code"]

    def kinds(cell: nbformat.NotebookNode) -> list[str]:
        return [
            next((m for m in o.data if m != "text/plain"), "text/plain")
            if "data" in o
            else o.output_type
            for o in cell.outputs
        ]

    assert kinds(code[0]) == ["stream", "text/html", "stream"]
    assert code[0].outputs[1].data["text/html"] == "<p>Hello from <b>Guile</b> on the node</p>"
    assert kinds(code[1]) == ["text/markdown", "text/latex"]
    assert kinds(code[2]) == ["image/svg+xml", "text/plain"]
    svg = code[2].outputs[0].data["image/svg+xml"]
    assert svg.startswith("<svg ") and svg.endswith("</svg>")
    points = re.search(r"points='([^']*)'", svg).group(1).split()
    assert len(points) == 100  # one per n, computed on the node
    assert shown(code[2])[-1] == "$1 = 118"
    assert code[3].outputs[0].data["application/json"]["longest"] == 118
    assert code[4].outputs[0].data["text/html"] == "step <b>5</b> of 5"  # updated in place
    assert shown(code[5]) == ['$2 = "no input here"']  # nbclient offers no stdin


class AnsweringClient(NotebookClient):
    """nbclient that answers the kernel's input requests as a person at the notebook
    would, with ``answer()``, and keeps each request's content in ``asked``.  (nbclient
    itself turns stdin off: a cell that asks raises StdinNotImplementedError.)"""

    def __init__(self, nb: nbformat.NotebookNode, answer: Callable[[], str], **kw: Any) -> None:
        super().__init__(nb, **kw)
        self.answer = answer
        self.asked: list[dict] = []
        self._answering: asyncio.Task | None = None

    async def async_start_new_kernel_client(self) -> Any:
        kc = await super().async_start_new_kernel_client()
        kc.allow_stdin = True
        self._answering = asyncio.ensure_future(self._answer_input_requests(kc))
        return kc

    async def _answer_input_requests(self, kc: Any) -> None:
        while True:
            try:
                msg = await kc.get_stdin_msg(timeout=0.5)
            except queue.Empty:
                continue
            if msg["msg_type"] == "input_request":
                self.asked.append(msg["content"])
                kc.input(self.answer())

    async def _async_cleanup_kernel(self) -> None:
        if self._answering is not None:
            self._answering.cancel()
            self._answering = None
        await super()._async_cleanup_kernel()


@pytest.mark.skipif(os.geteuid() != 0, reason="a local cluster needs root")
@pytest.mark.timeout(300)
def test_the_cluster_login_tour(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sshdist_kernel.localcluster import LocalCluster

    cluster = LocalCluster.up(tmp_path / "cluster", compute=64)
    try:
        monkeypatch.setenv("SSHDIST_CLUSTER_DIR", str(cluster.dir))  # the kernel inherits it
        nb = nbformat.read(NOTEBOOKS / "cluster_login.ipynb", as_version=4)
        client = AnsweringClient(
            nb, cluster.totp_code, kernel_name="python3", timeout=120, startup_timeout=60
        )
        client.execute()
    finally:
        cluster.down()
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert shown(code[0]) == [
        f"login node 127.0.0.1:{cluster.login_port}, 64 compute nodes cn01..cn64\n"
    ]
    # The login node's code, asked once for the 64 nodes, in a password field.
    assert len(client.asked) == 1 and client.asked[0]["password"] is True
    assert "(root@login) One-time password" in client.asked[0]["prompt"]
    ready, versions = shown(code[1])[0].splitlines()
    assert re.fullmatch(r"64 node\(s\) ready in [\d.]+ s", ready)
    assert re.fullmatch(r"  cn\[01-64\]: Guile 3\.\S+ \(64 nodes\)", versions)
    assert shown(code[2]) == ["64 nodes; connections to the login node: 1\n"]
    assert shown(code[3])[-1] == "([0, 1, 4, 9, 16], 408321, True)"
    assert shown(code[4]) == ["nodes closed\n"]
