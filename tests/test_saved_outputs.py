"""What a saved notebook keeps of the magics' calls, executed by nbclient in a real
Python kernel against the local nodes, written to disk and read back: each ended call's
static summary (HTML and its text twin) where its widget was, no widget view left to
read "model not found" in a new kernel, and with --stream the progress above the lines."""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient

from sshdist_kernel.localnodes import LocalNodes

WIDGET = "application/vnd.jupyter.widget-view+json"
SLOW = "(lambda (x) (usleep 50000) x)"  # 120 items: about 2 s on 3 nodes, so rows show


@pytest.fixture(scope="module")
def saved(local_nodes: LocalNodes, tmp_path_factory: pytest.TempPathFactory) -> list:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(source)
        for source in (
            f"%load_ext sshdist_magics\n%nodes -o nodes -F {local_nodes.ssh_config} "
            "node1 node2 node3",
            f"squares = %dist_map nodes {SLOW} range(120)",
            "%dist_map --stream -o streamed nodes "
            "(lambda (x) (usleep 50000) (display x) (newline) x) range(60)",
            f"%dist_map --bg -o job nodes {SLOW} range(120)",
            "%dist_result -o bg job",
        )
    ]
    NotebookClient(nb, kernel_name="python3", timeout=120, startup_timeout=60).execute()
    path = tmp_path_factory.mktemp("saved") / "calls.ipynb"
    nbformat.write(nb, path)
    return nbformat.read(path, as_version=4).cells


def summary_of(cell: nbformat.NotebookNode) -> nbformat.NotebookNode:
    (display,) = [o for o in cell.outputs if o.output_type == "display_data"]
    return display


@pytest.mark.timeout(300)
def test_a_saved_notebook_keeps_each_calls_summary_and_no_widget_view(saved: list) -> None:
    for cell in saved:
        for out in cell.outputs:
            assert WIDGET not in out.get("data", {}), cell.source
            assert "VBox(" not in str(out.get("data", {}).get("text/plain", "")), cell.source
    for index, state in ((1, "in "), (3, "in ")):
        shown = summary_of(saved[index]).data
        assert 'class="sshdist-summary"' in shown["text/html"]
        text = shown["text/plain"].splitlines()
        assert text[0].startswith("dist_map: 120 item(s) on ")
        assert ", 0 failover(s), " + state in text[0]
        assert [line.split()[0] for line in text[1:]] == ["node1", "node2", "node3"]
        done = sum(int(line.split()[1]) for line in text[1:])
        assert done == 120  # each row: its items, its jobs, its state
        assert shown["text/html"].count("<tr>") == 3
    # The summary line is said once: by the summary, not printed again under it.
    printed = "".join(o.text for o in saved[1].outputs if o.output_type == "stream")
    assert "dist_map: 120 item(s)" not in printed


@pytest.mark.timeout(300)
def test_stream_lines_come_after_the_progress_display(saved: list) -> None:
    kinds = [o.output_type for o in saved[2].outputs]
    assert kinds[0] == "display_data", kinds  # the progress, then the streamed lines
    assert set(kinds[1:]) == {"stream"}
    lines = "".join(o.text for o in saved[2].outputs[1:]).splitlines()
    numbers = sorted(int(line.split()[1]) for line in lines if line.startswith("[node"))
    assert numbers == list(range(60))
    assert summary_of(saved[2]).data["text/plain"].startswith("dist_map: 60 item(s) on ")
